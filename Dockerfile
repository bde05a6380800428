# mig-exporter container image.
#   docker build -t mig-exporter:0.1.0 .
#   docker run --rm --runtime=nvidia -e NVIDIA_VISIBLE_DEVICES=all \
#     -e NVIDIA_MIG_MONITOR_DEVICES=all -p 10110:10110 mig-exporter:0.1.0
# The image always reads the hardware (MIG_EXPORTER_NVML=true below, as if
# every start passed --nvml, whatever arguments `docker run` gives): without a
# driver it serves mig_exporter_source_up{source="nvml"} 0 and the reason,
# never a simulated node. For the demo, run the binary without a source flag
# (`-e MIG_EXPORTER_NVML=false`). On Kubernetes see deploy/daemonset.yaml.
# The tag is the image the chart (image.repository, appVersion) and
# deploy/daemonset.yaml run; tests/deploy.rs keeps the three the same.

# Build: the exporter alone, release profile, the committed lock file.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY crates crates
COPY src src
COPY proto proto
COPY benches benches
# Cargo reads every target the manifests declare (benches, tests, examples)
# before it builds any; tests/deploy.rs checks this list covers them.
COPY tests tests
COPY examples examples
RUN cargo build --release --locked --bin mig-exporter \
 && install -D -m 0755 target/release/mig-exporter /out/mig-exporter

# Runtime: glibc (the NVIDIA runtime mounts libnvidia-ml.so.1 into it, and the
# exporter loads it with dlopen), CA-free. Its sh, stat, grep, chmod and chown
# run the DaemonSet's init container that gives the state directory to 65532.
FROM debian:bookworm-slim
COPY --from=build /out/mig-exporter /usr/local/bin/mig-exporter
# An unprivileged user. The DaemonSet runs the exporter so; only its
# pod-resources relay and its init container run as root, with no capability
# or only CAP_CHOWN (deploy/daemonset.yaml).
USER 65532:65532
EXPOSE 10110
ENV NVIDIA_DRIVER_CAPABILITIES=utility
# An environment variable, not a CMD: `docker run IMAGE --poll.interval=1s`
# replaces a CMD, and with it --nvml.
ENV MIG_EXPORTER_NVML=true
ENTRYPOINT ["/usr/local/bin/mig-exporter"]
