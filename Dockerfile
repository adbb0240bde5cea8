# One image, every role: `userlens ingest`, `userlens query`, `userlens gateway`,
# `userlens migrate`, `userlens all-in-one`.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin userlens

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/userlens --create-home userlens
COPY --from=build /src/target/release/userlens /usr/local/bin/userlens
USER userlens
WORKDIR /var/lib/userlens
ENTRYPOINT ["userlens"]
CMD ["all-in-one"]
