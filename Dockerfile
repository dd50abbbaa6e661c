# bookbag-billing: a multi-stage build. The first stage compiles the release
# binary; the second is a small runtime image that runs it as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml models.toml ./
COPY crates ./crates
COPY migrations ./migrations
RUN cargo build --release --locked -p bookbag-billing

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/bookbag-billing --create-home billing
COPY --from=build /src/target/release/bookbag-billing /usr/local/bin/bookbag-billing
USER billing
WORKDIR /var/lib/bookbag-billing
ENV BILLING_LISTEN=0.0.0.0:8080 \
    BILLING_DATA_DIR=/var/lib/bookbag-billing/data \
    BILLING_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["bookbag-billing"]
CMD ["serve"]
