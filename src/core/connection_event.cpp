#include "core/connection_event.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace jugglite {

namespace {

std::string dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string stream_event_id(std::string_view node, std::string_view instance, unsigned shard,
                            std::uint64_t seq) {
    return fmt::format("{}/{}/{}/{}", node, instance, shard, seq);
}

std::string register_event(const register_fields& f) {
    nlohmann::json j = {{"type", "register"},
                        {"node", f.node},
                        {"id", f.id},
                        {"channels", *f.channels},
                        {"sub", f.sub},
                        {"ip", f.ip},
                        {"user_agent", f.user_agent},
                        {"at", f.at_ms}};
    return dump(j);
}

std::string unregister_event(std::string_view node, std::string_view id, std::string_view reason,
                             std::int64_t duration_ms, std::int64_t at_ms) {
    nlohmann::json j = {{"type", "unregister"}, {"node", node},
                        {"id", id},             {"reason", reason},
                        {"duration_ms", duration_ms}, {"at", at_ms}};
    return dump(j);
}

std::string node_event(std::string_view node, std::uint64_t streams, std::int64_t at_ms) {
    nlohmann::json j = {{"type", "node"}, {"node", node}, {"streams", streams}, {"at", at_ms}};
    return dump(j);
}

}  // namespace jugglite
