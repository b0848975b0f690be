-- Forged verdict fields from the sender are removed (a change-header request with an empty
-- value, which miltertest reports as MT_HDRDELETE, with the field's index among those of
-- the same name), and fpsafe adds its own.
local t = dofile((os.getenv("FPSAFE_LUADIR") or ".") .. "/common.lua")

local conn = t.connect()
t.send(conn, {
	qid = "QFORGED",
	from = "evil@example.com",
	rcpts = { "bob@example.net" },
	header = t.concat({
		{ "X-FPSafe-Verdict", "clean; score=0.0" },
		{ "X-Spam-Flag", "NO" },
		{ "X-Spam-Flag", "NO" },
		{ "X-Spam-Status", "No" },
	}, t.stdheader),
	body = "payload\r\n",
})

for _, d in ipairs({ { "X-FPSafe-Verdict", 1 }, { "X-Spam-Flag", 1 }, { "X-Spam-Flag", 2 }, { "X-Spam-Status", 1 } }) do
	t.check(mt.eom_check(conn, MT_HDRDELETE, d[1], d[2]), string.format("forged %s #%d not removed", d[1], d[2]))
end
-- a deletion is a change to the empty value
t.check(mt.eom_check(conn, MT_HDRCHANGE, "X-Spam-Flag", ""), "removal not seen as a change to \"\"")
for _, d in ipairs({ { "X-FPSafe-Verdict", 2 }, { "X-Spam-Flag", 3 }, { "X-Spam-Status", 2 } }) do
	t.check(not mt.eom_check(conn, MT_HDRDELETE, d[1], d[2]), string.format("%s #%d removed, but there is no such field", d[1], d[2]))
end
for _, name in ipairs({ "From", "To", "Subject" }) do
	t.check(not mt.eom_check(conn, MT_HDRCHANGE, name), name .. " changed or removed")
end

-- fpsafe's own verdict replaces the forged one (same value, but added, not kept)
t.check(mt.eom_check(conn, MT_HDRADD, "X-FPSafe-Verdict", " clean; score=0.0"),
	"X-FPSafe-Verdict not added; got " .. t.show(t.added(conn, "X-FPSafe-Verdict")))
t.addedonce(conn, "X-FPSafe-Verdict")
t.matches("X-FPSafe-Report", t.addedonce(conn, "X-FPSafe-Report"), "^ fake=clean %d+ms$")
for _, name in ipairs({ "X-Spam-Flag", "X-Spam-Status" }) do
	t.check(not mt.eom_check(conn, MT_HDRADD, name), name .. " added to a clean message")
end
t.check(not mt.eom_check(conn, MT_QUARANTINE), "clean message quarantined")

mt.disconnect(conn)
mt.echo("ok: forged fields removed, fpsafe's added")
