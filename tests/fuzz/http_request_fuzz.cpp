// The HTTP request parser and the router behind it, on any bytes: parse, then route with a
// configuration that turns every request-side feature on, and read every header helper.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/config.h"
#include "core/http_request.h"
#include "core/request_router.h"

using namespace jugglite;

namespace {

const config& settings() {
    static const config cfg = [] {
        config c;
        c.path = "/stream";
        c.allowed_channels = {"news*", "user:*", "a?c"};
        c.history_enabled = true;
        c.cors = cors_policy({"https://app.example"});
        return c;
    }();
    return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    parse_result parsed = parse_request(bytes);
    auto* req = std::get_if<http_request>(&parsed);
    if (!req) return 0;
    (void)req->wants_event_stream();
    (void)req->is_xhr();
    (void)req->bearer_token();
    (void)req->cookie_value("jugglite_token");
    (void)req->token("jugglite_token");
    route r = route_request(*req, settings());
    if (auto* s = std::get_if<stream_route>(&r)) {
        for (const auto& c : s->channels)
            if (!settings().channel_allowed(c)) __builtin_trap();  // a channel past --allowed-channels
        (void)stream_response(*s, settings().cors.headers(settings().cors.decide(req->origin)));
    }
    return 0;
}
