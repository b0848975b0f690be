-- A virus (the fake engine says Virus, "Win.Test.EICAR_HDB-1"): fpsafe asks for
-- quarantine with a reason, flags the message, and still answers SMFIR_CONTINUE: it never
-- rejects, tempfails or discards.
local t = dofile((os.getenv("FPSAFE_LUADIR") or ".") .. "/common.lua")

local conn = t.connect()
t.send(conn, {
	qid = "QVIRUS",
	from = "evil@example.com",
	rcpts = { "bob@example.net" },
	header = t.stdheader,
	body = "payload\r\n",
})

t.check(mt.eom_check(conn, MT_QUARANTINE), "quarantine not requested")
local reason = "fpsafe: virus fake: Win.Test.EICAR_HDB-1"
t.check(mt.eom_check(conn, MT_QUARANTINE, reason), "quarantine reason is not " .. string.format("%q", reason))

t.check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Flag", " YES"),
	"X-Spam-Flag: \" YES\" not added; got " .. t.show(t.added(conn, "X-Spam-Flag")))
t.addedonce(conn, "X-Spam-Flag")
t.matches("X-FPSafe-Verdict", t.addedonce(conn, "X-FPSafe-Verdict"), "^ quarantined; score=%d+%.%d$")
t.matches("X-Spam-Status", t.addedonce(conn, "X-Spam-Status"), "^ Yes, score=%d+%.%d action=quarantine verdict=quarantined$")
t.matches("X-FPSafe-Virus", t.addedonce(conn, "X-FPSafe-Virus"), "Win%.Test%.EICAR_HDB%-1")
t.matches("X-FPSafe-Report", t.addedonce(conn, "X-FPSafe-Report"), "^ fake=virus %d+ms %[Win%.Test%.EICAR_HDB%-1%]; quarantine: ")
t.check(not mt.eom_check(conn, MT_HDRCHANGE), "a field was changed or removed, but none was forged")

mt.disconnect(conn)
mt.echo("ok: virus quarantined, continued")
