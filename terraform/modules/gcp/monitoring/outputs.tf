output "metric_names" {
  description = "The log-based metric names."
  value = [
    google_logging_metric.requests.name,
    google_logging_metric.failures.name,
    google_logging_metric.tokens_in.name,
    google_logging_metric.tokens_out.name,
    google_logging_metric.cost.name,
    google_logging_metric.latency.name,
    google_logging_metric.upstream_failures.name,
  ]
}
