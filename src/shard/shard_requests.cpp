// The request side of a shard: a parsed request becomes a stream, a health or metrics
// answer, or an error answer; and refusals that a client should retry.
#include <fmt/format.h>

#include <algorithm>

#include "core/http_request.h"
#include "core/log.h"
#include "core/request_router.h"
#include "shard/shard.h"

namespace jugglite {

void shard::on_request_bytes(connection& c, std::uint32_t id) noexcept {
    parse_result parsed = parse_request(c.request);
    if (std::holds_alternative<need_more>(parsed)) return;
    if (auto* err = std::get_if<http_error>(&parsed)) {
        answer_and_close(c, id, err->status, err->reason);
        return;
    }
    try {
        dispatch(c, id, std::get<http_request>(parsed));
    } catch (const std::bad_alloc&) {
        // Fail this one connection; the shard goes on.
        if (c.state == conn_state::reading) answer_and_close(c, id, 503, "out of memory");
        else close_conn(c, id, close_reason::client_gone);
    }
}

// `req` points into c.request. May throw std::bad_alloc; the caller fails the connection.
// parse → route → authorize → start the stream (or answer).
void shard::dispatch(connection& c, std::uint32_t id, const http_request& req) {
    const config& cfg = *_env.cfg;
    c.wants_event_stream = req.wants_event_stream();
    route r = route_request(req, cfg);
    // Health and metrics answers carry no CORS grant: /metrics is not for other sites.
    const bool for_browsers = std::holds_alternative<stream_route>(r) ||
                              std::holds_alternative<preflight_route>(r) ||
                              std::holds_alternative<http_error>(r);
    c.cors = for_browsers ? cfg.cors.decide(req.origin) : cors_policy::none;
    if (auto* s = std::get_if<stream_route>(&r)) {
        if (!c.counted) {  // admitted over --max-conns only to hear this answer: before any
            refuse(c, id, refusal::capacity);  // token check or callback is spent on it
            return;
        }
        if (_drain) {  // the load balancer is being told (/readyz); this one goes elsewhere
            refuse(c, id, refusal::draining);
            return;
        }
        c.xhr = req.is_xhr();
        std::string sub;
        switch (authorize(c, id, req, *s, sub)) {
            case auth_step::stream: open_stream(c, id, *s, sub, req.user_agent); break;
            case auth_step::answered: break;
            case auth_step::asked: break;  // c.request stays until the answer (on_auth_answer)
        }
        return;
    }
    c.release_request();
    if (std::holds_alternative<preflight_route>(r)) {
        send_final(c, id, [&] { return cfg.cors.preflight_response(c.cors); });
    } else if (auto* h = std::get_if<health_route>(&r)) {
        if (h->kind == health_route::liveness) {
            if (live()) answer_and_close(c, id, 200, "ok");
            else answer_and_close(c, id, 503, "a loop has stalled");
            return;
        }
        if (_drain) {
            answer_and_close(c, id, 503, "draining");
            return;
        }
        switch (_env.redis_state->state.load(std::memory_order_relaxed)) {
            case redis_status::ready: answer_and_close(c, id, 200, "ok"); break;
            case redis_status::resubscribing:
                answer_and_close(c, id, 503, "redis subscriber is subscribing its channels again");
                break;
            default: answer_and_close(c, id, 503, "redis subscriber is not connected"); break;
        }
    } else if (std::holds_alternative<metrics_route>(r)) {
        send_final(c, id, [&] { return metrics_response(metrics_text()); });
    } else {
        const auto& e = std::get<http_error>(r);
        answer_and_close(c, id, e.status, e.reason);
    }
}

// With authorization configured, a stream needs valid credentials, and its channels narrow
// to the user's grant (on top of --allowed-channels). A token decides when the request has
// one; otherwise the auth callback is asked, and the request waits for the answer.
// `answered`: refused with 401 (431 for an oversized token), which an EventSource takes
// as final, as it should.
shard::auth_step shard::authorize(connection& c, std::uint32_t id, const http_request& req,
                                  stream_route& s, std::string& sub) {
    const config& cfg = *_env.cfg;
    if (!cfg.auth_required()) return auth_step::stream;
    std::string token = cfg.tokens ? req.token(cfg.jwt_cookie) : std::string();
    if (token.empty()) {
        if (cfg.auth_url) {
            ask_app(c, id, req, s);
            return c.state == conn_state::authorizing ? auth_step::asked : auth_step::answered;
        }
        _metrics.refused_auth.bump();
        answer_and_close(c, id, 401, "no token");
        return auth_step::answered;
    }
    std::expected<grant, token_error> g;
    std::string key = token_cache::key_of(token);
    if (auto hit = _tokens.find(key, _now_s, limits::token_leeway_seconds)) {
        g = std::move(*hit);
    } else {
        g = cfg.tokens->verify(token);
        if (!g) {
            _metrics.refused_auth.bump();
            answer_and_close(c, id, g.error().status, g.error().reason);
            return auth_step::answered;
        }
        _tokens.store(std::move(key), *g);
    }
    g->filter(s.channels);
    sub = std::move(g->sub);
    if (g->expires_at > 0) {
        // The leeway that admitted the token also ends the stream, or a token admitted
        // within it would be cut at once and come straight back.
        std::int64_t end = g->expires_at + limits::token_leeway_seconds;
        c.expires_at_s = static_cast<std::uint32_t>(std::clamp<std::int64_t>(end, 1, UINT32_MAX));
    }
    return auth_step::stream;
}

// Hands the request's credentials to the auth thread; the connection waits in
// `authorizing`, with its request bytes, until the answer or its deadline. Past the bound
// of calls in flight, the call waits in this shard (a burst of connects is asked in turn,
// not refused), within the same deadline.
void shard::ask_app(connection& c, std::uint32_t id, const http_request& req,
                    const stream_route& s) {
    auth_call call;
    call.shard = _id;
    call.conn = id;
    call.gen = c.gen;
    call.cookie = req.cookie;
    call.authorization = req.authorization;
    call.origin = req.origin;
    call.user_agent = req.user_agent;
    // X-Forwarded-For says who the client is only when a proxy we trust wrote it.
    if (c.extras && _env.cfg->trusted_proxy(c.extras->peer)) call.forwarded_for = req.forwarded_for;
    call.channels = encode_channel_list(s.channels);
    call.original_uri = req.target;
    if (c.extras && _env.cfg->auth_revalidate.count() > 0)
        c.extras->recheck = std::make_unique<auth_call>(call);
    // The whole wait, here and in curl, is bounded by --auth-timeout: the auth thread gives
    // curl what is left, and the shard's own deadline, a little later, is the backstop.
    call.deadline_ms = _now_ms + _env.cfg->auth_timeout.count();
    _auth_waiting.push_back(std::move(call));
    c.state = conn_state::authorizing;
    c.deadline_ms = _now_ms + _env.cfg->auth_timeout.count() + limits::tick.count() * 5;
    send_auth_calls();
}

// Hands waiting calls to the auth thread while fewer than limits::auth_calls_per_shard are
// in flight. A call whose connection closed, timed out or ended meanwhile is dropped: a
// first call is wanted while its request is `authorizing`, a recheck while it streams.
void shard::send_auth_calls() noexcept {
    while (!_auth_waiting.empty() && _auth_in_flight < limits::auth_calls_per_shard) {
        auth_call& call = _auth_waiting.front();
        const bool wanted = _conns.has(call.conn) && _conns[call.conn].gen == call.gen &&
                            (_conns[call.conn].state == conn_state::authorizing ||
                             _conns[call.conn].state == conn_state::streaming);
        if (wanted) {
            if (!_link.auth_calls->try_push(std::move(call))) return;  // full: next turn
            ++_auth_in_flight;
            _auth_queued = true;
        }
        _auth_waiting.pop_front();
    }
}

void shard::drain_auth_answers() noexcept {
    if (!_link.auth_answers) return;
    while (auto a = _link.auth_answers->try_pop()) on_auth_answer(*a);
    send_auth_calls();
    if (_auth_queued) wake_if_sleeping(_env.side.auth->flag, _env.side.auth->eventfd);
    _auth_queued = false;
}

void shard::on_auth_answer(auth_answer& a) noexcept {
    --_auth_in_flight;
    if (!_conns.has(a.conn)) return;
    connection& c = _conns[a.conn];
    if (c.gen != a.gen) return;  // closed meanwhile: nobody to tell
    if (c.state == conn_state::streaming) {
        on_recheck_answer(c, a.conn, a);
        return;
    }
    if (c.state != conn_state::authorizing) return;  // timed out and refused meanwhile
    switch (a.outcome) {
        case auth_answer::denied:
            _metrics.refused_auth.bump();
            answer_and_close(c, a.conn, a.status, a.reason);
            break;
        case auth_answer::failed:
            log::warn(_auth_log, _now_ms, "shard {}: {}; the stream is refused to retry", _id,
                      a.reason.empty() ? std::string_view("auth callback failed") : a.reason);
            refuse(c, a.conn, refusal::auth);
            break;
        case auth_answer::granted:
            try {
                stream_granted(c, a.conn, a.g);
            } catch (const std::bad_alloc&) {
                close_conn(c, a.conn, close_reason::client_gone);
            }
            break;
    }
}

// --auth-revalidate: asks the application again about an open stream it admitted. When
// calls are already waiting, this round is skipped (the next interval asks), so that a slow
// application can't make rechecks pile up.
void shard::recheck_stream(connection& c) noexcept {
    c.expires_at_s = static_cast<std::uint32_t>(_now_s + _env.cfg->auth_revalidate.count());
    if (!_auth_waiting.empty() || _auth_in_flight >= limits::auth_calls_per_shard) return;
    try {
        _auth_waiting.push_back(*c.extras->recheck);
        _auth_waiting.back().deadline_ms = _now_ms + _env.cfg->auth_timeout.count();
    } catch (const std::bad_alloc&) {
        return;
    }
    send_auth_calls();
}

// The answer about an open stream: it goes on while its grant still covers every channel
// it holds, and ends (with a retry, like an expired token) once the application withdrew
// it. A failed call changes nothing: an application's hiccup must not cut every stream.
void shard::on_recheck_answer(connection& c, std::uint32_t id, const auth_answer& a) noexcept {
    bool withdrawn = a.outcome == auth_answer::denied;
    try {
        if (a.outcome == auth_answer::granted)
            for (const membership& m : c.channels) withdrawn |= !a.g.allows(m.entry->name);
    } catch (const std::bad_alloc&) {
        return;  // undecided: asked again next interval
    }
    if (!withdrawn) return;
    _metrics.streams_revoked.bump();
    end_with_retry(c, id, "access withdrawn", "revoked", jittered_retry_ms());
}

// The application granted `g`: the request (kept in c.request) is routed again, which
// gives the same stream_route as before the call, and narrowed to the grant.
void shard::stream_granted(connection& c, std::uint32_t id, const grant& g) {
    parse_result parsed = parse_request(c.request);
    auto* req = std::get_if<http_request>(&parsed);
    route r = req ? route_request(*req, *_env.cfg) : route(http_error{500, "request lost"});
    auto* s = std::get_if<stream_route>(&r);
    if (!s) log::panic("a request that was routed to a stream no longer is");
    if (_drain) {  // authorized while the server began draining: it goes elsewhere
        refuse(c, id, refusal::draining);
        return;
    }
    g.filter(s->channels);
    if (c.extras && c.extras->recheck)
        c.expires_at_s = static_cast<std::uint32_t>(_now_s + _env.cfg->auth_revalidate.count());
    open_stream(c, id, *s, g.sub, req->user_agent);
}

// The start, once the stream's channels are final (admission was checked in dispatch).
// `user_agent` may point into c.request, which is released here.
void shard::open_stream(connection& c, std::uint32_t id, stream_route& s, std::string_view sub,
                        std::string_view user_agent) {
    if (c.extras && _link.events && !s.head_only) prepare_register(c, s, sub, user_agent);
    if (s.resume_from && !s.head_only) prepare_resume(c, *s.resume_from);
    c.release_request();  // the views into it are dead from here on
    start_stream(c, id, std::move(s.channels), s.head_only);
}

// A stream starts in `registering`: it joins its channels at once (so that their
// SUBSCRIBE goes out), and its headers and registration comment are written only once
// Redis has confirmed every channel, so "registered" means a message published now
// arrives. Channels already confirmed on the live link cost no wait.
void shard::start_stream(connection& c, std::uint32_t id, std::vector<std::string> channels,
                         bool head_only) {
    if (head_only) {
        _metrics.conns_opened.bump();
        c.state = conn_state::closing_after_send;
        (void)c.enqueue(frame_ref::make(stream_response({{}, true}, cors_headers(c))), SIZE_MAX);
        start_send(c, id);
        return;
    }
    // --max-channels is enforced by the redis thread, which alone knows every shard's
    // channels: a stream that needs a channel past the cap gets an over_capacity notice
    // while it waits here, and is turned away then (see on_channel_refused).
    c.state = conn_state::registering;
    c.deadline_ms = _now_ms + _env.cfg->register_timeout.count();
    join_channels(c, id, channels);
    if (c.unconfirmed == 0) begin_streaming(c, id);
}

void shard::answer_and_close(connection& c, std::uint32_t id, int status,
                             std::string_view body) noexcept {
    if (status >= 400) _metrics.conns_rejected.bump();
    if (status == 408) _metrics.request_timeouts.bump();
    send_final(c, id, [&] { return simple_response(status, body, cors_headers(c)); });
}

// Queues the one answer `make()` builds, after which the connection closes. An answer
// that can't be allocated closes the connection at once.
template <class Make>
void shard::send_final(connection& c, std::uint32_t id, Make&& make) noexcept {
    c.release_request();
    c.state = conn_state::closing_after_send;
    try {
        (void)c.enqueue(frame_ref::make(make()), SIZE_MAX);
    } catch (const std::bad_alloc&) {
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    if (!c.send_inflight) start_send(c, id);
}

void shard::refuse(connection& c, std::uint32_t id, refusal why) noexcept {
    std::string_view reason;
    switch (why) {
        case refusal::capacity:
            _metrics.refused_capacity.bump();
            reason = "connection limit reached";
            break;
        case refusal::channels:
            _metrics.refused_channels.bump();
            reason = "channel limit reached";
            break;
        case refusal::redis:
            _metrics.refused_redis.bump();
            reason = "redis is not ready";
            break;
        case refusal::auth:
            _metrics.refused_auth_unavailable.bump();
            reason = "authorization is unavailable";
            break;
        case refusal::draining:
            _metrics.refused_draining.bump();
            reason = "server is draining";
            break;
    }
    if (!c.wants_event_stream) {
        answer_and_close(c, id, 503, reason);
        return;
    }
    // An EventSource comes back by itself after `retry:`; jitter spreads a storm of them.
    _metrics.conns_rejected.bump();
    send_final(c, id, [&] { return retry_response(jittered_retry_ms(), reason, cors_headers(c)); });
}

std::uint32_t shard::jittered_retry_ms(std::uint32_t lo, std::uint32_t hi) noexcept {
    return lo + static_cast<std::uint32_t>(_rng() % (hi - lo + 1));
}

std::string shard::cors_headers(const connection& c) const {
    return _env.cfg->cors.headers(c.cors);
}

// Ends an open stream the server's way: `last` (a final comment, maybe a `retry:`) is
// written, then the connection closes. The client comes back by itself.
void shard::end_stream(connection& c, std::uint32_t id, std::string last,
                       std::string_view reason) noexcept {
    if (c.state != conn_state::streaming) return;
    leave_streaming(c, reason);
    c.state = conn_state::closing_after_send;
    if (!last.empty()) {
        try {
            (void)c.enqueue(frame_ref::make(std::move(last)), SIZE_MAX);
        } catch (const std::bad_alloc&) {
            close_conn(c, id, close_reason::client_gone);
            return;
        }
    }
    if (c.send_inflight) return;  // on_send goes on, and lingers once the queue is written
    if (c.has_pending()) start_send(c, id);
    else linger(c, id);
}

// The one way out of `streaming`, whether the stream is closed or ended with a last frame:
// its unregister event, its channels, the open-stream gauge. The caller sets the new state.
void shard::leave_streaming(connection& c, std::string_view reason) noexcept {
    announce_unregister(c, reason);
    leave_channels(c);
    _metrics.conns_open.set(_metrics.conns_open.get() - 1);
}

void shard::expire_stream(connection& c, std::uint32_t id) noexcept {
    _metrics.streams_expired.bump();
    end_with_retry(c, id, "token expired", "expired", jittered_retry_ms());
}

// Ends a stream whose grant ended: `: <comment>`, a jittered `retry:`, then the close, so
// the browser comes back (with fresh credentials) spread out.
void shard::end_with_retry(connection& c, std::uint32_t id, std::string_view comment,
                           std::string_view reason, std::uint32_t retry_ms) noexcept {
    std::string last;
    try {
        last = fmt::format(": {}\nretry: {}\n\n", comment, retry_ms);
    } catch (const std::bad_alloc&) {  // closed without the retry: the browser's default
    }
    end_stream(c, id, std::move(last), reason);
}

bool shard::live() const noexcept {
    const std::int64_t limit = limits::liveness_stall.count();
    if (_now_ms - _env.redis_state->heartbeat_ms.load(std::memory_order_relaxed) > limit) return false;
    for (const auto& m : _env.all_shards)
        if (_now_ms - static_cast<std::int64_t>(m.heartbeat_ms.get()) > limit) return false;
    return true;
}

std::string shard::metrics_text() const {
    metrics_view v{.shards = _env.all_shards,
                   .redis = _env.redis_counters,
                   .redis_ready = _env.redis_state->is_ready(),
                   .auth = _env.side.auth_counters,
                   .history = _env.side.history_counters,
                   .events = _env.side.event_counters};
    read_process_figures(v);
    return render_prometheus(v);
}

}  // namespace jugglite
