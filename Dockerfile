# jugglite container image: build on Debian bookworm, run on bookworm-slim with only the
# runtime libraries, as a non-root user. Configure with JUGGLITE_* environment variables
# (JUGGLITE_REDIS, JUGGLITE_PORT, JUGGLITE_NAMESPACE, ...; see `jugglite --help`).
#
# io_uring: jugglite needs the io_uring syscalls. Debian's docker.io (20.10) allows them;
# Docker Engine 25.0 and later block them in the default seccomp profile, so there run with
# a profile that allows io_uring_setup, io_uring_enter and io_uring_register (or, less
# strictly, --security-opt seccomp=unconfined). Without them jugglite exits at start with
# "io_uring_queue_init: Operation not permitted".

FROM debian:bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ cmake make pkg-config liburing-dev libhiredis-dev libfmt-dev libcxxopts-dev \
      libsimdjson-dev libcpp-jwt-dev nlohmann-json3-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY src ./src
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DJUGGLITE_BENCHMARKS=OFF \
 && cmake --build build -j"$(nproc)" --target jugglite \
 && strip build/jugglite

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      liburing2 libhiredis0.14 libfmt9 libsimdjson14 libcurl4 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin jugglite
COPY --from=build /src/build/jugglite /usr/local/bin/jugglite
USER jugglite
ENV JUGGLITE_ADDRESS=0.0.0.0 JUGGLITE_PORT=3000
EXPOSE 3000
STOPSIGNAL SIGTERM
# Liveness: /livez is 200 while jugglite's loops turn, whatever Redis does, so an orchestrator
# that restarts unhealthy containers does not restart every node in a Redis blip. Route
# traffic on readiness, /readyz. bash's /dev/tcp avoids adding curl.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${JUGGLITE_PORT:-3000} && printf 'GET /livez HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# jugglite is PID 1: it blocks SIGTERM/SIGINT and waits for them itself, so `docker stop`
# gets a clean shutdown (streams closed, exit 0) rather than a SIGKILL after the timeout.
ENTRYPOINT ["/usr/local/bin/jugglite"]
