// Micro-benchmark of token verification (what a connect with a token costs the shard):
// HS256, RS256 and ES256 tokens made by Node's crypto (tests/fixtures/jwt), each verified
// by a verifier holding only its key, plus a refused forgery (HS256 with a wrong key), and
// the shard's cache of verified tokens.
#include <benchmark/benchmark.h>

#include <stdexcept>

#include "core/limits.h"
#include "core/token_cache.h"
#include "core/token_verifier.h"
#include "support/jwt_fixtures.h"

namespace {

std::string fixture(const std::string& name) {
    auto text = test::read_jwt_fixture(name);
    if (!text) throw std::runtime_error("missing fixture " + name);
    return *text;
}

std::string token(const std::string& name) {
    auto all = test::jwt_fixture_tokens();
    if (!all.count(name)) throw std::runtime_error("missing token " + name);
    return all.at(name);
}

jugglite::token_verifier verifier(jugglite::jwt_key_source key) {
    jugglite::jwt_settings s;
    s.keys = {std::move(key)};
    return *jugglite::token_verifier::make(std::move(s));
}

void run(benchmark::State& state, const jugglite::token_verifier& v, const std::string& tok,
         bool expect_ok) {
    for (auto _ : state) {
        auto g = v.verify(tok);
        if (g.has_value() != expect_ok) state.SkipWithError("unexpected verdict");
        benchmark::DoNotOptimize(g);
    }
}

void bm_hs256(benchmark::State& state) {
    run(state, verifier({"", fixture("secret.txt"), false}), token("hs256"), true);
}
void bm_rs256(benchmark::State& state) {
    run(state, verifier({"", fixture("rsa_public.pem"), true}), token("rs256"), true);
}
void bm_es256(benchmark::State& state) {
    run(state, verifier({"", fixture("ec_public.pem"), true}), token("es256"), true);
}
void bm_hs256_forged(benchmark::State& state) {
    run(state, verifier({"", "another-secret-0123456789", false}), token("hs256"), false);
}

// A reconnect with a token this shard verified before: its SHA-256 and a lookup.
void bm_rs256_cached(benchmark::State& state) {
    auto v = verifier({"", fixture("rsa_public.pem"), true});
    const std::string tok = token("rs256");
    jugglite::token_cache cache(jugglite::limits::token_cache_entries);
    cache.store(jugglite::token_cache::key_of(tok), *v.verify(tok));
    for (auto _ : state) {
        auto g = cache.find(jugglite::token_cache::key_of(tok), 1'800'000'000, 5);
        if (!g) state.SkipWithError("miss");
        benchmark::DoNotOptimize(g);
    }
}

}  // namespace

BENCHMARK(bm_hs256);
BENCHMARK(bm_rs256_cached);
BENCHMARK(bm_rs256);
BENCHMARK(bm_es256);
BENCHMARK(bm_hs256_forged);
