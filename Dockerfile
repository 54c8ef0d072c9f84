# Multi-stage build of the capstan binary; the runtime image (Debian slim: CA certificates
# and a shell, no toolchain) runs it as a non-root user. By default it runs the daemon on
# the config mounted at /etc/capstan (a file or a directory of .toml files); the example
# shipped there is a placeholder to replace. The CloudFormation template in deploy/ instead
# writes the config from an SSM parameter and runs `capstan run` on that file.
# Lint: deploy/lint.sh (hadolint).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin capstan

FROM debian:bookworm-slim
# ca-certificates is left unpinned on purpose: it must follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 capstan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin capstan
COPY --from=build /src/target/release/capstan /usr/local/bin/capstan
COPY config/example.toml /etc/capstan/capstan.toml
USER 10001:10001
# /healthz, /readyz, /metrics and the status page on `[global] http_listen` (set it to
# 0.0.0.0:8080 to reach them from outside the container; the health check uses loopback).
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/capstan", "healthcheck", "--config", "/etc/capstan"]
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run", "--config", "/etc/capstan", "--log-format", "json"]
