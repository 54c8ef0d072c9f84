# Multi-stage build of the capstan binary; the runtime image has no toolchain and runs as a
# non-root user. It runs the daemon on the config mounted at /etc/capstan (a file or a
# directory of .toml files); the shipped example there is only a placeholder to replace.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin capstan

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home capstan
COPY --from=build /src/target/release/capstan /usr/local/bin/capstan
COPY config/example.toml /etc/capstan/capstan.toml
USER 10001
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run", "--config", "/etc/capstan", "--log-format", "json"]
