#include "core/token_cache.h"

#include <openssl/evp.h>

namespace jugglite {

std::string token_cache::key_of(std::string_view token) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(token.data(), token.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
    return std::string(reinterpret_cast<const char*>(md), len);
}

std::optional<grant> token_cache::find(const std::string& key, std::int64_t now_s,
                                       std::int64_t leeway_s) {
    if (_max == 0 || key.empty()) return std::nullopt;
    auto it = _entries.find(key);
    if (it == _entries.end()) return std::nullopt;
    if (it->second.expires_at != 0 && now_s > it->second.expires_at + leeway_s) {
        _entries.erase(it);  // its key stays in _order until evicted; erase of a gone key is a no-op
        return std::nullopt;
    }
    return it->second;
}

void token_cache::store(std::string key, const grant& g) {
    if (_max == 0) return;
    if (key.empty() || _entries.count(key)) return;
    while (_order.size() >= _max) {
        _entries.erase(_order.front());
        _order.pop_front();
    }
    _entries.emplace(key, g);
    _order.push_back(std::move(key));
}

}  // namespace jugglite
