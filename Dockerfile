# syntax=docker/dockerfile:1
# spool-agent image: a static binary on a small Alpine base (whose shell the
# demo workload uses), run as an unprivileged user.
#   docker build -t spool-agent .
#   docker run -v /var/spool/app:/var/spool/spool-agent/app spool-agent run --spool app=/var/spool/spool-agent/app

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context: pass the version, revision and date, e.g.
#   docker build --build-arg VERSION=1.2.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
ARG VERSION=""
ARG REVISION=""
ARG BUILD_DATE=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION} -X main.buildDate=${BUILD_DATE}" \
      -o /out/spool-agent ./cmd/spool-agent

FROM alpine:3.22
RUN addgroup -S -g 10001 spool \
 && adduser -S -D -H -u 10001 -G spool -s /sbin/nologin spool \
 && mkdir -p /var/spool/spool-agent \
 && chown spool:spool /var/spool/spool-agent
COPY --from=build /out/spool-agent /usr/local/bin/spool-agent
USER 10001:10001
WORKDIR /var/spool/spool-agent
VOLUME ["/var/spool/spool-agent"]
EXPOSE 19317
HEALTHCHECK --interval=30s --timeout=3s CMD wget -q -O /dev/null http://127.0.0.1:19317/-/healthy || exit 1
ENTRYPOINT ["/usr/local/bin/spool-agent"]
CMD ["run", "--spool", "demo=/var/spool/spool-agent/demo", "--web.listen-address=:19317"]
