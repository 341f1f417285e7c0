// The history envelope and ids, and the in-memory windows driven by a sequence of
// operations decoded from the input, checked against their invariants.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/history.h"
#include "core/history_window.h"
#include "core/sse_frame.h"

using namespace jugglite;

namespace {

struct input {
    const std::uint8_t* p;
    std::size_t n;
    std::uint8_t byte() { return n ? (--n, *p++) : 0; }
};

void check(const history_windows& w, std::string_view channel) {
    const history_window* win = w.find(channel);
    if (!win) return;
    stream_id last = win->base();
    for (const auto& e : win->entries()) {
        if (!(e.id > last)) __builtin_trap();  // ids increase, all after the base
        if (e.frame && e.frame->id() != e.id) __builtin_trap();
        last = e.id;
    }
    std::vector<history_entry> out;
    win->collect(win->base(), stream_id{UINT64_MAX, UINT64_MAX}, out);
    for (std::size_t i = 1; i < out.size(); ++i)
        if (!(out[i - 1].id < out[i].id)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto e = parse_envelope(text)) {
        if (e->previous && !(*e->previous < e->id)) __builtin_trap();
        if (e->payload.data() < text.data() || e->payload.data() + e->payload.size() != text.data() + text.size())
            __builtin_trap();
        if (stream_id::parse(e->id.text()) != e->id) __builtin_trap();
    }
    if (auto id = stream_id::parse(text))
        if (id->text().size() > text.size()) __builtin_trap();  // digits only, so never longer

    // Operations on three channels' windows, with small bounds so that eviction happens.
    history_windows w(4096, 8);
    const std::string_view names[] = {"a", "b", "{c}"};
    input in{data, size};
    std::uint64_t clock = 1;
    stream_id tail[3];
    while (in.n) {
        const std::uint8_t op = in.byte();
        const int c = op % 3;
        const std::string_view ch = names[c];
        const std::uint64_t step = in.byte() % 4;
        switch ((op / 3) % 6) {
            case 0: case 1: {  // a live message, usually following the channel's last
                const std::uint64_t before = clock;
                stream_id id{clock += step + 1, static_cast<std::uint64_t>(in.byte() % 3)};
                // As an envelope has it: the previous id is before the message's own.
                std::optional<stream_id> prev;
                if (!tail[c].empty() && (op & 0x80) == 0) prev = tail[c];
                else if (op & 0x40) prev = stream_id{before > step ? before - step : 0, 0};
                history_entry e{id, (op & 0x20) ? frame_ref{} : make_sse_frame("m", 0, {id, false})};
                (void)w.on_live(ch, e, prev);
                tail[c] = std::max(tail[c], id);
                break;
            }
            case 2: w.link_lost(); break;
            case 3: w.forget(ch); tail[c] = {}; break;
            case 4: case 5: {  // a read from some id (a catch-up's from the window's tail)
                stream_read r;
                const history_window* win = w.find(ch);
                r.from = (op / 3) % 6 == 5 && win ? win->tail() : stream_id{clock > step ? clock - step : 0, 0};
                const std::size_t k = in.byte() % 4;
                for (std::size_t i = 0; i < k; ++i) {
                    stream_id id{r.from.ms + i + (op & 1), i == 0 && (op & 1) == 0 ? r.from.seq : 0};
                    r.entries.push_back({id, make_sse_frame("r", 0, {id, false})});
                }
                // As stored: an entry's previous id is before it.
                if ((op & 0x10) && !r.entries.empty() && r.entries.front().id.ms > 0)
                    r.first_previous = stream_id{r.entries.front().id.ms - 1, 0};
                r.truncated = op & 0x08;
                if ((op / 3) % 6 == 4) w.seed(ch, r, stream_id{clock, 9});
                else (void)w.catch_up(ch, r);
                break;
            }
        }
        for (auto n : names) check(w, n);
    }
    return 0;
}
