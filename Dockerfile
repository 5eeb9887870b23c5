# The match service as a container image:
#   docker build -t hashsieve .          (or: podman build -t hashsieve .)
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/hashsieve.toml:/etc/hashsieve/hashsieve.toml:ro" \
#     -v hashsieve-state:/var/lib/hashsieve hashsieve
# Build stage: the Rust toolchain the crate is written for. Runtime stage: distroless (glibc
# and libgcc, no shell, no package manager) with the binary alone, run as a non-root user;
# the state dir (last good sets, trust state, indexes) is a volume. docs/operations.md,
# "Deploying on Kubernetes", has the configuration that goes with it.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables for profiling; the image does not need them.
RUN cargo build --release --locked \
 && objcopy --strip-debug target/release/hashsieve /hashsieve

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /hashsieve /usr/local/bin/hashsieve
USER 65532:65532
WORKDIR /var/lib/hashsieve
VOLUME ["/var/lib/hashsieve"]
ENV HASHSIEVE_LOG_FORMAT=json
EXPOSE 8080
# The probes are HTTP (/healthz, /readyz): the orchestrator's, since the image has no shell.
ENTRYPOINT ["/usr/local/bin/hashsieve"]
CMD ["serve", "--config", "/etc/hashsieve/hashsieve.toml"]
