-- A clean message (the fake engine says Clean): fpsafe adds its verdict and report, no
-- X-Spam-* field, asks for no quarantine and changes nothing else; end-of-message is
-- answered with SMFIR_CONTINUE.
local t = dofile((os.getenv("FPSAFE_LUADIR") or ".") .. "/common.lua")

local conn = t.connect()
t.send(conn, {
	qid = "QCLEAN1",
	from = "alice@example.org",
	auth = "alice",
	rcpts = { "bob@example.net", "carol@example.net" },
	header = t.stdheader,
	body = "Hi Bob.\r\n",
})

-- eom_check compares byte for byte: fpsafe's value starts with a space (HDR_LEADSPC).
t.check(mt.eom_check(conn, MT_HDRADD, "X-FPSafe-Verdict", " clean; score=0.0"),
	"X-FPSafe-Verdict: \" clean; score=0.0\" not added; got " .. t.show(t.added(conn, "X-FPSafe-Verdict")))
t.check(not mt.eom_check(conn, MT_HDRADD, "X-FPSafe-Verdict", "clean; score=0.0"),
	"X-FPSafe-Verdict added without its leading space")
t.addedonce(conn, "X-FPSafe-Verdict")
t.matches("X-FPSafe-Report", t.addedonce(conn, "X-FPSafe-Report"), "^ fake=clean %d+ms$")

for _, name in ipairs({ "X-Spam-Flag", "X-Spam-Score", "X-Spam-Status", "X-FPSafe-Virus" }) do
	t.check(not mt.eom_check(conn, MT_HDRADD, name), name .. " added to a clean message: " .. t.show(t.added(conn, name)))
end
t.check(not mt.eom_check(conn, MT_QUARANTINE), "clean message quarantined")
t.check(not mt.eom_check(conn, MT_HDRCHANGE), "a field of a clean message without forged fields was changed or deleted")
t.check(not mt.eom_check(conn, MT_HDRINSERT), "a field was inserted (fpsafe only appends)")

mt.disconnect(conn)
mt.echo("ok: clean message tagged clean, continued")
