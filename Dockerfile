# Build stage: compile a release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked

# Runtime stage: the binary, CA certificates, an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/axon --create-home axon
COPY --from=build /src/target/release/axon /usr/local/bin/axon
COPY config/axon.example.toml /etc/axon/axon.example.toml
USER axon
WORKDIR /var/lib/axon
ENV AXON_DATA_DIR=/var/lib/axon AXON_LISTEN__CLIENT=0.0.0.0:8008
EXPOSE 8008
ENTRYPOINT ["axon"]
CMD ["serve"]
