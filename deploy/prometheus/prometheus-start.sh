#!/bin/sh
# Write Prometheus's configuration from the environment, then run it in the foreground.
#   PSD_METRICS_TARGETS  comma-separated psd metrics addresses (default psd:7071)
#   SCRAPE_INTERVAL      (default 5s)
set -eu
targets=${PSD_METRICS_TARGETS:-psd:7071}
interval=${SCRAPE_INTERVAL:-5s}
conf=/tmp/prometheus.yml
list=$(printf '%s' "$targets" | sed 's/[^,][^,]*/"&"/g')
cat > "$conf" <<YAML
global:
  scrape_interval: $interval
  evaluation_interval: $interval
scrape_configs:
  - job_name: psd
    metrics_path: /metrics
    static_configs:
      - targets: [$list]
YAML
exec prometheus --config.file="$conf" --storage.tsdb.path=/tmp/prometheus-data \
    --web.listen-address=0.0.0.0:9090 "$@"
