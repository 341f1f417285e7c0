// Child processes for integration tests: spawn, signal, wait, read their log.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace test {

class child_process {
public:
    // Starts argv[0] (a path) with `argv`, extra "NAME=value" entries added to the
    // environment, stdout and stderr both appended to `log_path`.
    static child_process spawn(const std::vector<std::string>& argv,
                               const std::vector<std::string>& env_extra, const std::string& log_path);
    child_process(child_process&& o) noexcept;
    child_process& operator=(child_process&& o) noexcept;
    child_process(const child_process&) = delete;
    ~child_process();  // SIGKILLs a child still running

    // Sends `sig` and waits up to `timeout` for exit; returns the exit status (128+signal
    // for a signal death), or nullopt if it did not exit in time (it is then SIGKILLed).
    std::optional<int> stop(int sig, std::chrono::milliseconds timeout);
    // Exit status if it has exited, nullopt while running.
    std::optional<int> poll_exit();
    [[nodiscard]] pid_t pid() const { return _pid; }
    [[nodiscard]] std::string log() const;

private:
    child_process() = default;
    pid_t _pid = -1;
    std::optional<int> _status;
    std::string _log_path;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

// A fresh temporary directory (removed by the OS eventually; tests keep logs there).
std::string temp_dir();

// Polls `pred` every 10 ms until it is true or `timeout` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        struct timespec ts{0, 10'000'000};
        nanosleep(&ts, nullptr);
    }
    return pred();
}

}  // namespace test
