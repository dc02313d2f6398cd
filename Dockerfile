# The gw image: `gwc` and the examples on a distroless base, as a non-root user.
#
#   docker build -t gw . && docker run --rm -p 8080:8080 gw
#
# serves examples/deploy/gw.gw (copied to /etc/gw/gw.gw); mount your own
# configuration over it (`-v "$PWD/app.gw:/etc/gw/gw.gw:ro"`). docs/deploy.md
# has the rest; tests/deploy.rs holds this file to the README's commands.

# Build on Debian 12, the runtime's release (its glibc). The dependencies
# need Rust 1.88 or later.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Run: glibc and libgcc, no shell, no package manager; user `nonroot` (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gwc /usr/local/bin/gwc
COPY examples/ /usr/share/gw/examples/
COPY examples/deploy/gw.gw /etc/gw/gw.gw
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: distroless has no shell or HTTP client to run one. Probe
# from outside: `GET /healthz` with `Host: gw-probe` on :8080 (docs/deploy.md).
ENTRYPOINT ["/usr/local/bin/gwc", "serve", "/etc/gw/gw.gw"]
