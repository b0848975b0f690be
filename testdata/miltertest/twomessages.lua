-- Several transactions on one connection, both ways a new one can start: Q1; then Q2,
-- begun right after Q1's end-of-message with no abort in between, and aborted after its
-- header; then Q3, begun after that abort. Q1 and Q3 are each decided and continued; Q3's
-- removals count only Q3's own fields (no header left over from Q1 or Q2).
local t = dofile((os.getenv("FPSAFE_LUADIR") or ".") .. "/common.lua")

local conn = t.connect()

t.send(conn, {
	qid = "Q1",
	from = "a@example.org",
	rcpts = { "x@example.net" },
	header = { { "X-Spam-Flag", "NO" }, { "From", "a@example.org" }, { "Subject", "first" } },
	body = "one\r\n",
})
t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag", 1), "Q1: forged X-Spam-Flag not removed")
t.check(mt.eom_check(conn, MT_HDRADD, "X-FPSafe-Verdict", " clean; score=0.0"), "Q1: verdict not added")

-- Q2: no abort before it; aborted after its header
t.check(mt.macro(conn, SMFIC_MAIL, "i", "Q2", "{mail_addr}", "b@example.org") == nil, "Q2 mail macros")
if not mt.test_option(conn, SMFIP_NOMAIL) then
	t.step(conn, "Q2 mailfrom", mt.mailfrom(conn, "<b@example.org>"))
end
if not mt.test_option(conn, SMFIP_NORCPT) then
	t.step(conn, "Q2 rcptto", mt.rcptto(conn, "<y@example.net>"))
end
t.headers(conn, { { "X-Spam-Flag", "NO" }, { "Subject", "aborted" } })
t.check(mt.abort(conn) == nil, "abort failed")

t.send(conn, {
	qid = "Q3",
	from = "c@example.org",
	rcpts = { "z@example.net" },
	header = { { "X-Spam-Flag", "NO" }, { "From", "c@example.org" }, { "To", "z@example.net" }, { "Subject", "third" } },
	body = "three\r\n",
})
t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag", 1), "Q3: forged X-Spam-Flag not removed")
for n = 2, 3 do
	t.check(not mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag", n),
		"Q3: X-Spam-Flag #" .. n .. " removed: fields of an earlier message leaked into Q3")
end
t.check(mt.eom_check(conn, MT_HDRADD, "X-FPSafe-Verdict", " clean; score=0.0"), "Q3: verdict not added")
t.addedonce(conn, "X-FPSafe-Verdict")
t.addedonce(conn, "X-FPSafe-Report")
t.check(not mt.eom_check(conn, MT_QUARANTINE), "Q3: quarantined")

mt.disconnect(conn)
mt.echo("ok: Q1 and Q3 decided and continued, Q2 aborted")
