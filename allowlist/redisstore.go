package allowlist

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps an allowlist shared by a fleet of MTAs in Redis. Like FileStore, it
// serves Lookup from an immutable in-memory snapshot behind an atomic pointer: Lookup never
// touches Redis and never waits.
//
// # Data model
//
// With the default prefix "fpsafe:allowlist":
//
//	fpsafe:allowlist:entries  hash: field = entry id, value = the Entry as JSON
//	                          {"id":..,"match":..,"require":..,"reason":..,"owner":..,"added":"2025-01-31",...}
//	fpsafe:allowlist:version  counter, INCR'd by every change made through RedisStore
//	fpsafe:allowlist:changed  pub/sub channel: a change publishes the new version on it
//	fpsafe:allowlist:audit    stream: one record per change, fields time, who, action, id,
//	                          entry (JSON, "" when unknown) and reason; never trimmed
//
// A hash has no order: the snapshot lists entries by Added, then by id, the same on every
// MTA (Lookup prefers the first of equally proven entries).
//
// # Freshness
//
// The snapshot is read in full (HGETALL, with the version, in one MULTI/EXEC) at start, on
// every message on the changed channel, every StoreConfig.Refresh, on Reload, and whenever
// the change subscription is (re)established, since pub/sub messages sent while
// disconnected are lost. Keyspace notifications are not used. A tool writing the hash
// directly should INCR the version and PUBLISH on the channel; otherwise its change is
// picked up by the next periodic refresh.
//
// A new content replaces the snapshot only when every entry is valid JSON for an Entry
// whose id is its field and the whole list passes NewList; otherwise it is refused as a
// whole, logged once with the entry and the reason, reported by LastError, and the last good
// list stays active.
//
// # Redis unavailable
//
// Every Redis call has a deadline of a few seconds. When Redis cannot be reached, the last
// good snapshot keeps serving, LastError says why, LoadedAt (the last successful read)
// tells its age, and Run logs the outage once, retries with a backoff, and logs the
// recovery. When Redis is unreachable at start (or its list is invalid), NewRedisStore
// does not fail: mail must keep flowing, so the store starts with an EMPTY list (no
// bypass: every message is filtered normally), LastError set, and Run fills it in as soon
// as Redis answers.
//
// # Changes
//
// Add, Remove and Import validate like FileStore, then run one MULTI/EXEC transaction
// guarded by WATCH on the hash and the version: the audit records (XADD), the hash change,
// the version INCR and the PUBLISH are applied together or not at all. When another admin
// changed the list in between, the transaction is retried a few times on the new content.
type RedisStore struct {
	url     string   // redacted
	secrets []string // passwords, scrubbed from every message
	keys    redisKeys
	refresh time.Duration
	timeout time.Duration // deadline of each Redis call
	health  time.Duration // the change subscription is pinged after this long without traffic
	log     *slog.Logger
	rdb     redis.UniversalClient
	now     func() time.Time

	cur  atomic.Pointer[List]
	poke chan struct{} // asks Run to reload now

	loadMu sync.Mutex // serializes loads

	mu       sync.Mutex // guards the fields below
	lastErr  error
	loadedAt time.Time
	version  int64
	digest   [32]byte // of the hash content of the active list; zero before the first load
	refused  [32]byte // of the last content refused, so that it is logged once
	down     bool     // Redis unreachable at the last attempt (logged once per outage)

	closeOnce sync.Once
}

type redisKeys struct {
	entries, version, changed, audit string
}

var _ Store = (*RedisStore)(nil)

// Limits of the Redis client and the store.
const (
	redisTimeout       = 2 * time.Second  // each Redis call, and dial attempts
	redisHealth        = 10 * time.Second // ping of an idle change subscription
	redisWriteAttempts = 5                // optimistic transaction attempts of a change
	redisMaxBackoff    = 10 * time.Second // retry period during an outage, at most
	redisAuditPage     = 1000
)

// errRedisInvalid marks a load refused because of the content, not of Redis.
var errRedisInvalid = errors.New("invalid allowlist content")

// NewRedisStore connects to the Redis of cfg.Redis and loads the list under cfg.Prefix
// (default "fpsafe:allowlist"). ctx bounds the initial load, which also has its own
// deadline of a few seconds. It fails only for configuration errors (a malformed URL, a
// Redis Cluster prefix without hash tag); when Redis is down or its list is invalid it
// returns an empty store that Run keeps retrying (see RedisStore). log may be nil.
//
// cfg.Redis is a URL:
//
//	redis://[user:password@]host:port/db           standalone (db defaults to 0)
//	rediss://...                                   the same over TLS
//	redis://[user:password@]host1:port,host2:port  Redis Cluster: a seed list of nodes,
//	                                               also ?addr=host2:port&addr=...;
//	                                               ?cluster=true for a single seed node
//	redis://[user:password@]sentinel1:26379,sentinel2:26379/db?master_name=mymaster
//	                                               Sentinel: the hosts are the sentinels,
//	                                               the credentials those of the master
//	                                               (sentinels without password)
//
// Other query parameters are go-redis's (redis.ParseURL: dial_timeout, pool_size, ...).
// Unless given, dial_timeout, read_timeout and write_timeout are 2s, max_retries 1 and
// pool_size 4; context deadlines are always honoured. In Cluster the keys must share a
// slot: write the prefix with a hash tag, e.g. prefix = "{fpsafe:allowlist}".
//
// The password never appears in logs or errors (see RedactURL).
func NewRedisStore(ctx context.Context, cfg StoreConfig, log *slog.Logger) (*RedisStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, secrets, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultStoreConfig().Prefix
	}
	cluster := opts.MasterName == "" && (opts.IsClusterMode || len(opts.Addrs) > 1)
	if cluster && !hasHashTag(prefix) {
		return nil, fmt.Errorf("allowlist.prefix = %q: Redis Cluster keeps keys in different slots, which a transaction cannot span; "+
			"write the prefix with a hash tag, e.g. prefix = %q", prefix, "{"+prefix+"}")
	}
	refresh := cfg.Refresh
	if refresh <= 0 {
		refresh = DefaultStoreConfig().Refresh
	}
	s := &RedisStore{
		url:     RedactURL(cfg.Redis),
		secrets: secrets,
		keys: redisKeys{
			entries: prefix + ":entries",
			version: prefix + ":version",
			changed: prefix + ":changed",
			audit:   prefix + ":audit",
		},
		refresh: refresh,
		timeout: redisTimeout,
		health:  redisHealth,
		log:     log,
		rdb:     redis.NewUniversalClient(opts),
		now:     time.Now,
		poke:    make(chan struct{}, 1),
	}
	empty, _ := NewList(nil)
	s.cur.Store(empty)
	if err := s.loadCtx(ctx); err != nil && !errors.Is(err, errRedisInvalid) {
		// load logged it; say what it means at start.
		s.log.Warn("allowlist: starting with an EMPTY list (no sender bypasses quarantine) until redis answers",
			"redis", s.url)
	} else if err != nil {
		s.log.Warn("allowlist: starting with an EMPTY list (no sender bypasses quarantine) until the list in redis is fixed",
			"redis", s.url, "key", s.keys.entries)
	}
	return s, nil
}

// SetRedisLogger sends the messages of the go-redis library, which otherwise prints every
// failed dial attempt to stderr, to log at debug level (go-redis has one logger per
// process). RedisStore reports outages itself, once; call this once at start.
func SetRedisLogger(log *slog.Logger) {
	if log != nil {
		redis.SetLogger(redisLogger{log})
	}
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// hasHashTag reports whether key has a Redis Cluster hash tag: a non-empty {...}.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(key[i+1:], '}')
	return j > 0
}

// redisOptions turns the URL into client options, with the passwords it holds.
func redisOptions(raw string) (*redis.UniversalOptions, []string, error) {
	red := RedactURL(raw)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("allowlist.redis = %s: "+format, append([]any{red}, args...)...)
	}
	if strings.TrimSpace(raw) == "" {
		return nil, nil, errors.New("allowlist.redis: empty URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, and its reason can quote part of the userinfo.
		var ue *url.Error
		if errors.As(err, &ue) && !strings.Contains(raw, "@") {
			return nil, nil, fail("not a valid URL: %v", ue.Err)
		}
		return nil, nil, fail("not a valid URL: want redis://[user:password@]host:port/db (escape special characters of the password with %%XX)")
	}
	var secrets []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p)
		}
	}
	scrub := func(err error) error { return errors.New(scrubSecrets(err.Error(), secrets)) }
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, nil, fail("scheme %q: want redis:// or rediss:// (TLS)", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, nil, fail("no host: want redis://[user:password@]host:port/db")
	}
	q := u.Query()
	hosts := strings.Split(u.Host, ",")
	extra := append(hosts[1:], q["addr"]...)
	master := q.Get("master_name")
	clusterMode := false
	if v := q.Get("cluster"); v != "" {
		if clusterMode, err = strconv.ParseBool(v); err != nil {
			return nil, nil, fail("cluster = %q: want true or false", v)
		}
	}
	q.Del("addr")
	q.Del("master_name")
	q.Del("cluster")
	first := *u
	first.Host = hosts[0]
	first.RawQuery = q.Encode()
	o, err := redis.ParseURL(first.String())
	if err != nil {
		return nil, nil, fail("%v", scrub(err))
	}
	addrs := []string{o.Addr}
	for _, a := range extra {
		a = strings.TrimSpace(a)
		if h, p, err := net.SplitHostPort(a); err != nil || h == "" || p == "" {
			return nil, nil, fail("node %q: want host:port", a)
		}
		addrs = append(addrs, a)
	}
	uo := &redis.UniversalOptions{
		Addrs:                 addrs,
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		TLSConfig:             o.TLSConfig,
		DisableIdentity:       o.DisableIdentity,
		IdentitySuffix:        o.IdentitySuffix,
		MasterName:            master,
		IsClusterMode:         clusterMode,
	}
	// Short, bounded defaults: with go-redis's own (5 s dial timeout, 5 dial attempts,
	// 3 retries) a call can block for tens of seconds while Redis is down.
	if uo.DialTimeout == 0 {
		uo.DialTimeout = redisTimeout
	}
	if uo.DialerRetries == 0 {
		uo.DialerRetries = 2
	}
	if uo.ReadTimeout == 0 {
		uo.ReadTimeout = redisTimeout
	}
	if uo.WriteTimeout == 0 {
		uo.WriteTimeout = redisTimeout
	}
	if uo.PoolTimeout == 0 {
		uo.PoolTimeout = redisTimeout
	}
	if uo.MaxRetries == 0 {
		uo.MaxRetries = 1
	}
	if uo.PoolSize == 0 {
		uo.PoolSize = 4
	}
	return uo, secrets, nil
}

// RedactURL returns the Redis URL u with its password, and any query parameter whose name
// contains "password", replaced by "xxxxx", for logs, errors and `config check`. A string
// that does not parse as a URL has its whole userinfo and query replaced.
func RedactURL(u string) string {
	const x = "xxxxx"
	p, err := url.Parse(u)
	if err != nil {
		rest, scheme := u, ""
		if i := strings.Index(u, "://"); i >= 0 {
			scheme, rest = u[:i+3], u[i+3:]
		}
		// The userinfo ends at the last @; without a colon it may be a misplaced password.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			user := x
			if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
				user = rest[:c] + ":" + x
			}
			rest = user + "@" + rest[at+1:]
		}
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			rest = rest[:i] + "?" + x
		}
		return scheme + rest
	}
	if p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), x)
		}
	}
	if p.RawQuery != "" {
		q, qerr := url.ParseQuery(p.RawQuery)
		changed := qerr != nil
		for k, vs := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				for i := range vs {
					vs[i] = x
				}
				changed = true
			}
		}
		if qerr != nil {
			p.RawQuery = x
		} else if changed {
			p.RawQuery = q.Encode()
		}
	}
	p.Fragment, p.RawFragment = "", ""
	return p.String()
}

// scrubSecrets replaces every secret in msg by "xxxxx".
func scrubSecrets(msg string, secrets []string) string {
	for _, p := range secrets {
		if p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
			if e := url.QueryEscape(p); e != p {
				msg = strings.ReplaceAll(msg, e, "xxxxx")
			}
			if e := url.PathEscape(p); e != p {
				msg = strings.ReplaceAll(msg, e, "xxxxx")
			}
		}
	}
	return msg
}

// scrub returns err with the passwords removed from its message (and then no longer
// wrapping the original error); nil stays nil.
func (s *RedisStore) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := scrubSecrets(msg, s.secrets); clean != msg {
		return errors.New(clean)
	}
	return err
}

// URL is the Redis URL, password redacted.
func (s *RedisStore) URL() string { return s.url }

// Prefix is the key prefix.
func (s *RedisStore) Prefix() string { return strings.TrimSuffix(s.keys.entries, ":entries") }

// Snapshot returns the active list; never nil (empty until Redis first answers).
func (s *RedisStore) Snapshot() *List { return s.cur.Load() }

// Lookup looks id up in the active list without touching Redis; RedisStore is a
// policy.Allowlist.
func (s *RedisStore) Lookup(id Identity, rcpts []string, now time.Time) *Match {
	return s.cur.Load().Lookup(id, rcpts, now)
}

// LastError is why the last read of the list failed (Redis unreachable, or its content
// refused), or nil when the active list is Redis's current content.
func (s *RedisStore) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// LoadedAt is when the list was last read successfully from Redis (the active list is
// that content); zero while Redis has never answered.
func (s *RedisStore) LoadedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadedAt
}

// Version is the value of the version counter at the last successful read.
func (s *RedisStore) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Reload reads the list from Redis now (for SIGHUP). On error the last good list stays
// active and the error is also kept for LastError.
func (s *RedisStore) Reload() error { return s.loadCtx(context.Background()) }

// Close closes the connections to Redis. The store keeps serving its snapshot but can no
// longer refresh or change it. Run closes the store when it returns.
func (s *RedisStore) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.rdb.Close() })
	return err
}

// trigger asks Run for a reload, without waiting.
func (s *RedisStore) trigger() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

func (s *RedisStore) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// Run keeps the snapshot fresh until ctx ends, then closes the store and returns nil: it
// subscribes to the changed channel (reloading on every message and on every
// (re)subscription), reloads every Refresh, and while Redis is unreachable retries with a
// backoff of up to 10 s, logging the outage once and the recovery once.
func (s *RedisStore) Run(ctx context.Context) error {
	defer s.Close()
	var wg sync.WaitGroup
	wg.Go(func() { s.watch(ctx) })
	defer wg.Wait()

	failures := 0
	if s.isDown() {
		failures = 1
	}
	t := time.NewTimer(s.retryDelay(failures))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.poke:
		case <-t.C:
		}
		if err := s.load(ctx, true); err != nil && !errors.Is(err, errRedisInvalid) {
			if ctx.Err() != nil {
				return nil
			}
			failures++
		} else {
			failures = 0
		}
		t.Reset(s.retryDelay(failures))
	}
}

// retryDelay is the wait before the next full reload after failures consecutive failures
// to reach Redis.
func (s *RedisStore) retryDelay(failures int) time.Duration {
	if failures == 0 {
		return s.refresh
	}
	d := time.Second << min(failures-1, 10)
	return min(d, redisMaxBackoff, s.refresh)
}

// watch keeps a subscription to the changed channel until ctx ends.
func (s *RedisStore) watch(ctx context.Context) {
	fails, warned := 0, false
	for ctx.Err() == nil {
		subscribed, err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			fails, warned = 0, false
		}
		fails++
		s.trigger() // a reload tells whether Redis is down, and logs it once
		err = s.scrub(err)
		if fails >= 3 && !warned && !s.isDown() {
			warned = true
			s.log.Warn("allowlist: redis change notifications unavailable; changes are picked up by the periodic reload",
				"redis", s.url, "channel", s.keys.changed, "refresh", s.refresh, "err", err)
		} else {
			s.log.Debug("allowlist: redis subscription lost; retrying", "redis", s.url, "err", err)
		}
		wait := min(250*time.Millisecond<<min(fails-1, 5), 5*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session subscribes to the changed channel and asks for a reload on every subscription
// confirmation and message, until the connection fails or ctx ends. subscribed reports
// whether the subscription was confirmed at least once.
func (s *RedisStore) session(ctx context.Context) (subscribed bool, err error) {
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() }) // unblocks Receive
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	err = ps.Subscribe(sctx, s.keys.changed)
	cancel()
	if err != nil {
		return false, err
	}
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.health)
		if err != nil {
			if ctx.Err() != nil {
				return subscribed, nil
			}
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				// Nothing for a while: make sure the connection is alive (a half-open
				// connection would otherwise silently swallow the notifications).
				pctx, cancel := context.WithTimeout(ctx, s.timeout)
				err = ps.Ping(pctx)
				cancel()
				if err != nil {
					return subscribed, err
				}
				pinged = true
				continue
			}
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// (Re)subscribed: messages sent meanwhile are lost, so reload in full.
				subscribed = true
				s.log.Debug("allowlist: subscribed to redis changes", "redis", s.url, "channel", m.Channel)
				s.trigger()
			}
		case *redis.Message:
			s.log.Debug("allowlist: change notified", "redis", s.url, "version", m.Payload)
			s.trigger()
		}
	}
}

// loadCtx reads the list from Redis and makes it active when valid. It returns an error
// wrapping errRedisInvalid when the content is refused, another error when Redis could not
// be read.
func (s *RedisStore) loadCtx(parent context.Context) error { return s.load(parent, false) }

// load is loadCtx; when stopping, a failure caused by the end of parent (Run stopping) is
// neither recorded nor logged.
func (s *RedisStore) load(parent context.Context, stopping bool) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()
	var ver *redis.StringCmd
	var all *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ver = p.Get(ctx, s.keys.version)
		all = p.HGetAll(ctx, s.keys.entries)
		return nil
	})
	if err == nil || errors.Is(err, redis.Nil) {
		err = all.Err()
	}
	now := s.now()
	if err != nil && stopping && parent.Err() != nil {
		return parent.Err()
	}
	if err != nil {
		err = fmt.Errorf("allowlist: redis %s: %w", s.url, s.scrub(err))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lastErr = err
		if !s.down {
			s.down = true
			s.log.Error("allowlist: redis unreachable; the last good list stays active, retrying",
				"redis", s.url, "err", err, "entries", s.cur.Load().Len(), "active_since", s.loadedAt)
		} else {
			s.log.Debug("allowlist: redis still unreachable", "redis", s.url, "err", err)
		}
		return err
	}
	version, _ := ver.Int64() // informational; 0 when missing
	m := all.Val()
	d := redisDigest(m)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.down = false
		s.log.Info("allowlist: redis reachable again", "redis", s.url, "down_since_loaded", s.loadedAt)
	}
	if version == 0 && s.version > 0 && len(m) == 0 {
		// Redis answered, but the version counter and every entry are gone: it restarted
		// without persistence, or was flushed. An empty list is not what anybody edited,
		// so the last good list stays until a list is written again (import, add).
		err := fmt.Errorf("allowlist: redis %s: %w: the version counter and every entry are gone (redis restarted without persistence, or was flushed); the last good list (version %d, %d entries) stays active: re-import the list",
			s.url, errRedisInvalid, s.version, s.cur.Load().Len())
		if s.lastErr == nil || s.lastErr.Error() != err.Error() {
			s.log.Error("allowlist: redis lost the list; the last good list stays active", "redis", s.url, "version", s.version)
		}
		s.lastErr = err
		return err
	}
	if d == s.digest {
		s.lastErr, s.loadedAt, s.version = nil, now, version
		s.log.Debug("allowlist: unchanged", "redis", s.url, "entries", s.cur.Load().Len(), "version", version)
		return nil
	}
	l, err := s.decode(m)
	if err != nil {
		err = fmt.Errorf("%w: the last good list stays active: %w", errRedisInvalid, err)
		err = fmt.Errorf("allowlist: redis %s: %w", s.url, err)
		s.lastErr = err
		if d != s.refused {
			s.refused = d
			s.log.Error("allowlist: new version refused; the last good list stays active",
				"redis", s.url, "key", s.keys.entries, "err", err, "active_since", s.loadedAt)
		}
		return err
	}
	s.cur.Store(l)
	s.lastErr, s.loadedAt, s.version, s.digest, s.refused = nil, now, version, d, [32]byte{}
	s.log.Info("allowlist loaded", "redis", s.url, "key", s.keys.entries, "entries", l.Len(),
		"expired", len(l.Expired(now)), "version", version)
	for i, f := range Lint(l, now) {
		if i == maxLoggedFindings {
			s.log.Warn("allowlist lint: more findings not logged", "redis", s.url)
			break
		}
		s.log.Warn("allowlist lint", "finding", f.String())
	}
	return nil
}

// redisDigest identifies a content of the entries hash.
func redisDigest(m map[string]string) [32]byte {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(m[k]), m[k])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// decodeEntries decodes the hash content, in snapshot order (Added, then id). On error it
// also returns the entries that did decode; the error names every bad field (up to 20).
func (s *RedisStore) decodeEntries(m map[string]string) ([]Entry, error) {
	entries := make([]Entry, 0, len(m))
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e, err := decodeRedisEntry(k, m[k])
		if err != nil {
			if len(errs) < 20 {
				errs = append(errs, fmt.Errorf("%s: entry %q: %w", s.keys.entries, k, err))
			}
			continue
		}
		entries = append(entries, e)
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		return cmp.Or(a.Added.Time().Compare(b.Added.Time()), strings.Compare(a.ID, b.ID))
	})
	return entries, errors.Join(errs...)
}

// decode builds the List of the hash content. The error reports every invalid entry: those
// that are not JSON for an Entry, and those NewList refuses.
func (s *RedisStore) decode(m map[string]string) (*List, error) {
	entries, derr := s.decodeEntries(m)
	l, lerr := newList(entries, s.keys.entries)
	if err := errors.Join(derr, lerr); err != nil {
		return nil, err
	}
	return l, nil
}

// decodeRedisEntry decodes one field of the hash: an Entry as JSON whose id is the field.
func decodeRedisEntry(field, value string) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("not an entry in JSON: %v", err)
	}
	if dec.More() {
		return Entry{}, errors.New("not an entry in JSON: data after the object")
	}
	if e.ID != field {
		return Entry{}, fmt.Errorf("the entry's id is %q: it must be its field name", e.ID)
	}
	e.Line = 0
	return e, nil
}

func encodeRedisEntry(e *Entry) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// Add adds e and records it in the audit trail as who's. e must be complete (reason and
// owner included), valid and not expired, and its id new; an unset Added is today (UTC).
func (s *RedisStore) Add(e Entry, who string) error {
	return s.add([]Entry{e}, who, AuditAdd, "")
}

// Import adds several entries at once, each recorded in the audit trail as an import by
// who for reason. Either all are added or none.
func (s *RedisStore) Import(entries []Entry, who, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errors.New("allowlist: import: a reason is required for the audit trail")
	}
	return s.add(entries, who, AuditImport, reason)
}

func (s *RedisStore) add(entries []Entry, who, action, reason string) error {
	now := s.now()
	entries, err := prepareChange(entries, who, action, now)
	if err != nil {
		return err
	}
	// Check the entries themselves before asking Redis.
	if _, err := NewList(entries); err != nil {
		return fmt.Errorf("allowlist: %s: %w", action, err)
	}
	values := make(map[string]any, len(entries))
	recs := make([]AuditRecord, len(entries))
	for i := range entries {
		v, err := encodeRedisEntry(&entries[i])
		if err != nil {
			return fmt.Errorf("allowlist: %s: entry %q: %w", action, entries[i].ID, err)
		}
		values[entries[i].ID] = v
		why := reason
		if why == "" {
			why = entries[i].Reason
		}
		recs[i] = AuditRecord{Time: now.UTC(), Who: who, Action: action, ID: entries[i].ID, Entry: &entries[i], Reason: why}
	}
	err = s.change(action, func(cur map[string]string) (map[string]any, []string, []AuditRecord, error) {
		if _, err := s.decode(cur); err != nil {
			return nil, nil, nil, fmt.Errorf("allowlist: %s: the list in redis is invalid; remove or fix the invalid entries first, nothing changed: %w", action, err)
		}
		old, _ := s.decodeEntries(cur)
		for _, e := range entries {
			if _, ok := cur[e.ID]; ok {
				return nil, nil, nil, fmt.Errorf("allowlist: %s: entry %q already exists; remove it first", action, e.ID)
			}
		}
		if _, err := NewList(append(old, entries...)); err != nil {
			return nil, nil, nil, fmt.Errorf("allowlist: %s: %w", action, err)
		}
		return values, nil, recs, nil
	})
	if err != nil {
		return err
	}
	for _, e := range entries {
		s.log.Info("allowlist entry added", "redis", s.url, "entry", e.ID, "match", e.Match, "require", e.Require, "who", who, "action", action)
	}
	s.loadCtx(context.Background()) // the change is made; a failed reload is in LastError
	return nil
}

// Remove deletes the entry id and records it, with who and reason, in the audit trail. An
// entry that is invalid in Redis can be removed too (that is how to fix it through fpsafe).
func (s *RedisStore) Remove(id, who, reason string) error {
	switch {
	case strings.TrimSpace(who) == "":
		return errors.New("allowlist: remove: who is required for the audit trail")
	case strings.TrimSpace(reason) == "":
		return errors.New("allowlist: remove: a reason is required for the audit trail")
	}
	err := s.change(AuditRemove, func(cur map[string]string) (map[string]any, []string, []AuditRecord, error) {
		raw, ok := cur[id]
		if !ok {
			return nil, nil, nil, fmt.Errorf("allowlist: remove: no entry %q in redis %s", id, s.keys.entries)
		}
		rec := AuditRecord{Time: s.now().UTC(), Who: who, Action: AuditRemove, ID: id, Reason: reason}
		if e, err := decodeRedisEntry(id, raw); err == nil {
			rec.Entry = &e
		}
		return nil, []string{id}, []AuditRecord{rec}, nil
	})
	if err != nil {
		return err
	}
	s.log.Info("allowlist entry removed", "redis", s.url, "entry", id, "who", who, "reason", reason)
	s.loadCtx(context.Background())
	return nil
}

// errRefused carries an error of the change function out of the transaction.
type errRefused struct{ err error }

func (e *errRefused) Error() string { return e.err.Error() }

// change applies edit to the current content of the hash in one MULTI/EXEC transaction,
// with WATCH on the hash and the version: audit records, hash change, version INCR and
// PUBLISH together. It retries when the list changed meanwhile.
func (s *RedisStore) change(action string, edit func(cur map[string]string) (set map[string]any, del []string, recs []AuditRecord, err error)) error {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			cur, err := tx.HGetAll(ctx, s.keys.entries).Result()
			if err != nil {
				return err
			}
			version, err := tx.Get(ctx, s.keys.version).Int64()
			if errors.Is(err, redis.Nil) {
				version, err = 0, nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", s.keys.version, err)
			}
			set, del, recs, err := edit(cur)
			if err != nil {
				return &errRefused{err}
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, r := range recs {
					p.XAdd(ctx, &redis.XAddArgs{Stream: s.keys.audit, Values: auditValues(r)})
				}
				if len(set) > 0 {
					p.HSet(ctx, s.keys.entries, set)
				}
				if len(del) > 0 {
					p.HDel(ctx, s.keys.entries, del...)
				}
				p.Incr(ctx, s.keys.version)
				p.Publish(ctx, s.keys.changed, strconv.FormatInt(version+1, 10))
				return nil
			})
			return err
		}, s.keys.entries, s.keys.version)
		cancel()
		var refused *errRefused
		switch {
		case err == nil:
			return nil
		case errors.As(err, &refused):
			return refused.err
		case errors.Is(err, redis.TxFailedErr) && attempt < redisWriteAttempts:
			time.Sleep(time.Duration(10+rand.IntN(40*attempt)) * time.Millisecond)
			continue
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("allowlist: %s: the list in redis %s kept changing while being edited; nothing changed, try again", action, s.url)
		default:
			return fmt.Errorf("allowlist: %s: redis %s: %w", action, s.url, s.scrub(err))
		}
	}
}

// auditValues are the fields of an audit stream record.
func auditValues(r AuditRecord) []any {
	entry := ""
	if r.Entry != nil {
		entry, _ = encodeRedisEntry(r.Entry)
	}
	return []any{
		"time", r.Time.UTC().Format(time.RFC3339Nano),
		"who", r.Who,
		"action", r.Action,
		"id", r.ID,
		"entry", entry,
		"reason", r.Reason,
	}
}

// Audit returns the audit trail (the audit stream), oldest first.
func (s *RedisStore) Audit() ([]AuditRecord, error) {
	var out []AuditRecord
	start := "-"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		msgs, err := s.rdb.XRangeN(ctx, s.keys.audit, start, "+", redisAuditPage).Result()
		cancel()
		if err != nil {
			return out, fmt.Errorf("audit: redis %s: %s: %w", s.url, s.keys.audit, s.scrub(err))
		}
		for _, m := range msgs {
			r, err := parseAuditMessage(m)
			if err != nil {
				return out, fmt.Errorf("audit: redis %s: %s %s: %w", s.url, s.keys.audit, m.ID, err)
			}
			out = append(out, r)
		}
		if len(msgs) < redisAuditPage {
			return out, nil
		}
		next, err := nextStreamID(msgs[len(msgs)-1].ID)
		if err != nil {
			return out, fmt.Errorf("audit: redis %s: %s: %w", s.url, s.keys.audit, err)
		}
		start = next
	}
}

// nextStreamID returns the smallest stream id after id ("ms-seq"), for paging with
// XRANGE on servers older than Redis 6.2 (no exclusive ranges).
func nextStreamID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	n, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("unexpected stream id %q", id)
	}
	if n == ^uint64(0) {
		return strconv.FormatUint(m+1, 10) + "-0", nil
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}

func parseAuditMessage(m redis.XMessage) (AuditRecord, error) {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	r := AuditRecord{Who: str("who"), Action: str("action"), ID: str("id"), Reason: str("reason")}
	if t := str("time"); t != "" {
		tm, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return r, fmt.Errorf("time: %v", err)
		}
		r.Time = tm
	}
	if e := str("entry"); e != "" {
		var en Entry
		if err := json.Unmarshal([]byte(e), &en); err != nil {
			return r, fmt.Errorf("entry: %v", err)
		}
		r.Entry = &en
	}
	return r, nil
}
