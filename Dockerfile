# One image, five services and the admin tool: the entrypoint picks connector,
# persister, notifier, webhooks, gateway or zapbus-admin (provision).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/connector ./cmd/persister ./cmd/notifier ./cmd/webhooks ./cmd/gateway ./cmd/zapbus-admin

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot
ENTRYPOINT ["/usr/local/bin/notifier"]
