# d-vecDB server image. Build: docker build -t dvecdb .   Run:
#   docker run -p 8080:8080 -v dvecdb-data:/data -e DVECDB_API_KEY=change-me dvecdb
# Not exercised in CI (no Docker engine there; see docs/server.md).
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libxxhash-dev libinih-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make clean && make build/libdvecdb.a build/vectordb-server build/vectordb-cli

FROM debian:12
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libjansson4 libcurl4 libxxhash0 libinih1 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --shell /usr/sbin/nologin vectordb \
 && mkdir -p /data && chown vectordb:vectordb /data
COPY --from=build /src/build/vectordb-server /src/build/vectordb-cli /usr/local/bin/
USER vectordb
VOLUME /data
EXPOSE 8080
# Listening on all interfaces needs a key (DVECDB_API_KEY) or DVECDB_ALLOW_INSECURE=true;
# the server refuses to start otherwise.
ENV DVECDB_DATA_DIR=/data DVECDB_HOST=0.0.0.0 DVECDB_REST_PORT=8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/vectordb-server"]
