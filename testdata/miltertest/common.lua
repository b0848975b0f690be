-- Helpers shared by fpsafe's miltertest scripts (loaded with dofile; runs nothing itself).
--
-- The scripts are driven by milter/miltertest_test.go, which starts fpsafe's milter server
-- in-process and passes, in the environment:
--   FPSAFE_MILTER   the server's socket in miltertest syntax, "inet:PORT@127.0.0.1"
--   FPSAFE_SYMLIST  "1" if fpsafe must request macros (SMFIF_SETSYMLIST), "0" if not
--
-- Facts about miltertest (opendkim 2.11, miltertest 1.6.0) that the scripts rely on:
-- * mt.header sends the value with one space put in front of it when the milter negotiated
--   SMFIP_HDR_LEADSPC (fpsafe does): scripts give values as they follow "Name: ", without
--   that space, and fpsafe receives " value".
-- * eom_check and getheader see the values fpsafe sends as they are, and eom_check compares
--   names and values with strcmp (case-sensitive, byte-exact): a value fpsafe adds carries
--   its own leading space (" clean; score=0.0") and must be given with it.
-- * MT_HDRDELETE matches a change-header request whose value is empty (fpsafe's way of
--   deleting a field), optionally with its index; such a request also matches
--   MT_HDRCHANGE with the value "". (MT_HDRCHANGE's index argument is unusable: miltertest
--   takes the index from the value's position.)
-- * getreply after eom is the final reply; modifications are collected until it.
-- * Calling a step the milter negotiated away (SMFIP_NO*) aborts the script, so every
--   step is guarded by test_option.
-- * miltertest reads each reply into a 1024-byte buffer: keep fpsafe's replies (header
--   values) short here.
-- * Macros are never sent automatically; mt.macro replaces the macros of its stage.

local M = {}

-- fail reports what went wrong and ends the script with a non-zero exit status.
function M.fail(msg)
	mt.echo("FAIL: " .. msg)
	error(msg, 2)
end

function M.check(cond, msg)
	if not cond then
		M.fail(msg)
	end
end

local replies = {}
for _, n in ipairs({ "SMFIR_CONTINUE", "SMFIR_ACCEPT", "SMFIR_REJECT", "SMFIR_TEMPFAIL",
	"SMFIR_DISCARD", "SMFIR_REPLYCODE", "SMFIR_SKIP" }) do
	if _G[n] ~= nil then
		replies[_G[n]] = n
	end
end

-- replyname names a reply code, e.g. "SMFIR_CONTINUE" or "'q' (113)".
function M.replyname(r)
	if replies[r] ~= nil then
		return replies[r]
	end
	if r == 0 then
		return "none"
	end
	return string.format("'%s' (%d)", string.char(math.floor(r)), math.floor(r))
end

-- step checks that a protocol step succeeded and that fpsafe answered CONTINUE.
function M.step(conn, what, err)
	if err ~= nil then
		M.fail(what .. " failed: " .. tostring(err))
	end
	local r = mt.getreply(conn)
	if r ~= SMFIR_CONTINUE then
		M.fail(what .. ": fpsafe replied " .. M.replyname(r) .. ", want SMFIR_CONTINUE")
	end
end

-- connect opens a connection, negotiates and checks what fpsafe asked for, then sends the
-- connection information and HELO as an MTA would.
function M.connect()
	local sock = os.getenv("FPSAFE_MILTER")
	M.check(sock ~= nil and sock ~= "", "FPSAFE_MILTER is not set")
	mt.set_timeout(30)
	local conn = mt.connect(sock)
	M.check(conn ~= nil, "mt.connect(" .. sock .. ") failed")

	-- nil: offer miltertest's defaults (libmilter's SMFI_CURR_ACTS / SMFI_CURR_PROT)
	local err = mt.negotiate(conn, nil, nil, nil)
	M.check(err == nil, "negotiation failed: " .. tostring(err))

	-- what fpsafe negotiated
	M.check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "fpsafe did not negotiate SMFIP_HDR_LEADSPC")
	M.check(mt.test_action(conn, SMFIF_ADDHDRS), "fpsafe did not ask for SMFIF_ADDHDRS")
	M.check(mt.test_action(conn, SMFIF_CHGHDRS), "fpsafe did not ask for SMFIF_CHGHDRS")
	M.check(mt.test_action(conn, SMFIF_QUARANTINE), "fpsafe did not ask for SMFIF_QUARANTINE")
	for _, a in ipairs({ "SMFIF_CHGBODY", "SMFIF_ADDRCPT", "SMFIF_DELRCPT", "SMFIF_CHGFROM", "SMFIF_ADDRCPT_PAR" }) do
		if _G[a] ~= nil then
			M.check(not mt.test_action(conn, _G[a]), "fpsafe asked for " .. a .. ": it must never change the body or the envelope")
		end
	end
	local want = os.getenv("FPSAFE_SYMLIST")
	if SMFIF_SETSYMLIST ~= nil and want ~= nil then
		local got = mt.test_action(conn, SMFIF_SETSYMLIST)
		M.check(got == (want == "1"), "SMFIF_SETSYMLIST negotiated = " .. tostring(got) .. ", want " .. want)
	end

	-- connection macros, as Postfix sends them
	M.check(mt.macro(conn, SMFIC_CONNECT, "j", "mx.fpsafe.test", "{daemon_name}", "fpsafe-test",
		"_", "mx.sender.example [192.0.2.7]", "{client_addr}", "192.0.2.7", "{client_name}", "mx.sender.example") == nil,
		"connect macros")
	if not mt.test_option(conn, SMFIP_NOCONNECT) then
		M.step(conn, "conninfo", mt.conninfo(conn, "mx.sender.example", "192.0.2.7"))
	end
	if not mt.test_option(conn, SMFIP_NOHELO) then
		M.step(conn, "helo", mt.helo(conn, "mx.sender.example"))
	end
	return conn
end

-- send runs one transaction up to and including end-of-message:
-- m = {qid=, from=, auth= (SASL login, optional), rcpts={...}, header={{name, value}, ...},
-- body=}. Header values are given without the space after the colon (see above). It checks
-- that every step, and end-of-message, got SMFIR_CONTINUE (never a reject, tempfail,
-- discard or custom reply).
function M.send(conn, m)
	if m.auth ~= nil then
		M.check(mt.macro(conn, SMFIC_MAIL, "i", m.qid, "{mail_addr}", m.from, "{auth_type}", "PLAIN", "{auth_authen}", m.auth) == nil, "mail macros")
	else
		M.check(mt.macro(conn, SMFIC_MAIL, "i", m.qid, "{mail_addr}", m.from) == nil, "mail macros")
	end
	if not mt.test_option(conn, SMFIP_NOMAIL) then
		M.step(conn, "mailfrom " .. m.from, mt.mailfrom(conn, "<" .. m.from .. ">"))
	end
	for _, r in ipairs(m.rcpts) do
		M.check(mt.macro(conn, SMFIC_RCPT, "i", m.qid, "{rcpt_addr}", r) == nil, "rcpt macros")
		if not mt.test_option(conn, SMFIP_NORCPT) then
			M.step(conn, "rcptto " .. r, mt.rcptto(conn, "<" .. r .. ">"))
		end
	end
	M.headers(conn, m.header)
	if not mt.test_option(conn, SMFIP_NOEOH) then
		M.step(conn, "eoh", mt.eoh(conn))
	end
	if not mt.test_option(conn, SMFIP_NOBODY) then
		M.step(conn, "body", mt.bodystring(conn, m.body))
	end
	-- end-of-message macros (SMFIC_BODYEOB, 'E'), as Postfix sends the queue id there
	M.check(mt.macro(conn, string.byte("E"), "i", m.qid) == nil, "eom macros")
	local err = mt.eom(conn)
	M.check(err == nil, "eom failed: " .. tostring(err))
	local r = mt.getreply(conn)
	for _, bad in ipairs({ "SMFIR_REJECT", "SMFIR_TEMPFAIL", "SMFIR_DISCARD", "SMFIR_REPLYCODE" }) do
		M.check(r ~= _G[bad], "end-of-message of " .. m.qid .. ": fpsafe answered " .. bad .. ": it must never refuse mail")
	end
	M.check(r == SMFIR_CONTINUE, "end-of-message of " .. m.qid .. ": fpsafe answered " .. M.replyname(r) ..
		", want SMFIR_CONTINUE (accept, keeping the connection's state)")
	M.check(not mt.eom_check(conn, MT_BODYCHANGE), m.qid .. ": fpsafe replaced the body")
end

-- headers sends header fields, {{name, value}, ...}.
function M.headers(conn, hdr)
	if mt.test_option(conn, SMFIP_NOHDRS) then
		return
	end
	for _, f in ipairs(hdr) do
		M.step(conn, "header " .. f[1], mt.header(conn, f[1], f[2]))
	end
end

-- added returns the value of the n-th (0-based) field name that fpsafe added, or nil.
function M.added(conn, name, n)
	return mt.getheader(conn, name, n or 0)
end

-- addedonce checks that fpsafe added exactly one field name and returns its value.
function M.addedonce(conn, name)
	local v = M.added(conn, name, 0)
	M.check(v ~= nil, name .. " not added")
	M.check(M.added(conn, name, 1) == nil, name .. " added more than once")
	return v
end

-- show quotes a value for a message, or says "nothing".
function M.show(v)
	if v == nil then
		return "nothing"
	end
	return string.format("%q", v)
end

-- matches checks value against an anchored Lua pattern.
function M.matches(name, value, pattern)
	M.check(string.find(value, pattern) ~= nil,
		string.format("%s = %q does not match %q", name, value, pattern))
end

-- stdheader is a plain header section.
M.stdheader = {
	{ "From", "Alice <alice@example.org>" },
	{ "To", "bob@example.net" },
	{ "Subject", "Hello" },
}

-- concat returns the fields of a followed by those of b.
function M.concat(a, b)
	local r = {}
	for _, f in ipairs(a) do
		r[#r + 1] = f
	end
	for _, f in ipairs(b) do
		r[#r + 1] = f
	end
	return r
end

return M
