# Tsunagi: one static-ish binary on a slim Debian base.
#   docker build -t tsunagi .
#   docker run -p 8080:8080 -p 11112:11112 -v tsunagi-data:/data tsunagi
FROM rust:1.95-bookworm AS build
# cmake builds CharLS (JPEG-LS) from source; the other codecs build with the C/C++ compiler
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY proxy.toml ./
RUN cargo build --release --locked --bin tsunagi

FROM debian:bookworm-slim
RUN useradd --system --home /data tsunagi && mkdir -p /data /etc/tsunagi && chown tsunagi /data
COPY --from=build /src/target/release/tsunagi /usr/local/bin/tsunagi
COPY proxy.toml /etc/tsunagi/proxy.toml
USER tsunagi
WORKDIR /data
ENV TSUNAGI_HTTP__LISTEN=0.0.0.0:8080 \
    TSUNAGI_DIMSE__LISTEN=0.0.0.0:11112 \
    TSUNAGI_STORE__PATH=/data
EXPOSE 8080 11112
VOLUME ["/data"]
ENTRYPOINT ["tsunagi"]
CMD ["serve", "--config", "/etc/tsunagi/proxy.toml"]
