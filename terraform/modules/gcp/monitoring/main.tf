# Log-based metrics from the gateway's audit records (one JSON line per request on stdout,
# SPEC §7, read by Cloud Logging as jsonPayload.*) and the alert policies built on them.
# Label cardinality is bounded: product, model, provider, status and failure class; never the
# user, and never a name a client chose: `model_label` (the configured name or pattern that served
# it, `other` or `none`, as /metrics labels it; `model` holds whatever a client sent to a 404) and
# `product_label` (a configured product, `unconfigured` or `none`; `product` is the token's claim).
locals {
  container_filter = join(" AND ", [
    "resource.type=\"k8s_container\"",
    "resource.labels.namespace_name=\"${var.namespace}\"",
    "resource.labels.container_name=\"${var.container_name}\"",
  ])
  audit_filter = "${local.container_filter} AND jsonPayload.type=\"audit\""

  # The WARNING lines of failed upstream attempts ("upstream attempt failed; …") and of streams that
  # failed after their first byte ("upstream stream failed after its first byte"): a provider failing
  # shows here even while fallbacks keep the requests succeeding.
  upstream_failure_filter = join(" AND ", [
    local.container_filter,
    "severity=WARNING",
    "(jsonPayload.message=~\"^upstream attempt failed\" OR jsonPayload.message=~\"^upstream stream failed\")",
  ])

  failure_classes = [
    "auth", "forbidden", "blocked", "rate_limit", "quota", "policy", "bad_request", "not_found",
    "upstream", "timeout", "client_abort", "internal",
  ]

  # PromQL names of the user-defined log-based metrics.
  promql = {
    requests   = "logging_googleapis_com:user_${google_logging_metric.requests.name}"
    failures   = "logging_googleapis_com:user_${google_logging_metric.failures.name}"
    tokens_in  = "logging_googleapis_com:user_${google_logging_metric.tokens_in.name}"
    tokens_out = "logging_googleapis_com:user_${google_logging_metric.tokens_out.name}"
    cost       = "logging_googleapis_com:user_${google_logging_metric.cost.name}"
    latency    = "logging_googleapis_com:user_${google_logging_metric.latency.name}"
    upstream   = "logging_googleapis_com:user_${google_logging_metric.upstream_failures.name}"
  }
  failure_regex = join("|", var.failure_rate_classes)
}

resource "google_logging_metric" "requests" {
  project = var.project_id
  name    = "${var.name_prefix}_requests"
  filter  = local.audit_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "keygate requests"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "model"
      value_type = "STRING"
    }
    labels {
      key        = "provider"
      value_type = "STRING"
    }
    labels {
      key        = "status"
      value_type = "STRING"
    }
    labels {
      key        = "failure"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product  = "EXTRACT(jsonPayload.product_label)"
    model    = "EXTRACT(jsonPayload.model_label)"
    provider = "EXTRACT(jsonPayload.provider)"
    status   = "EXTRACT(jsonPayload.status)"
    failure  = "EXTRACT(jsonPayload.failure)"
  }
}

resource "google_logging_metric" "failures" {
  project = var.project_id
  name    = "${var.name_prefix}_failures"
  filter = join(" AND ", [
    local.audit_filter,
    "(${join(" OR ", [for c in local.failure_classes : "jsonPayload.failure=\"${c}\""])})",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "keygate failures by class"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "failure"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product = "EXTRACT(jsonPayload.product_label)"
    failure = "EXTRACT(jsonPayload.failure)"
  }
}

resource "google_logging_metric" "tokens_in" {
  project         = var.project_id
  name            = "${var.name_prefix}_tokens_in"
  filter          = local.audit_filter
  value_extractor = "EXTRACT(jsonPayload.tokens_in)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "keygate prompt tokens"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "model"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product = "EXTRACT(jsonPayload.product_label)"
    model   = "EXTRACT(jsonPayload.model_label)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "tokens_out" {
  project         = var.project_id
  name            = "${var.name_prefix}_tokens_out"
  filter          = local.audit_filter
  value_extractor = "EXTRACT(jsonPayload.tokens_out)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "keygate completion tokens"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "model"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product = "EXTRACT(jsonPayload.product_label)"
    model   = "EXTRACT(jsonPayload.model_label)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

# What the requests cost, from the audit's cost_usd (the policy file's `prices`; requests of models
# without a price carry null and are left out).
resource "google_logging_metric" "cost" {
  project         = var.project_id
  name            = "${var.name_prefix}_cost_usd"
  filter          = "${local.audit_filter} AND jsonPayload.cost_usd>0"
  value_extractor = "EXTRACT(jsonPayload.cost_usd)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "{USD}"
    display_name = "keygate request cost"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "model"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product = "EXTRACT(jsonPayload.product_label)"
    model   = "EXTRACT(jsonPayload.model_label)"
  }

  # From a millionth of a dollar up to about $4,000 for one request.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 0.000001
    }
  }
}

resource "google_logging_metric" "latency" {
  project         = var.project_id
  name            = "${var.name_prefix}_latency"
  filter          = local.audit_filter
  value_extractor = "EXTRACT(jsonPayload.latency_ms)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "keygate request latency"

    labels {
      key        = "product"
      value_type = "STRING"
    }
    labels {
      key        = "provider"
      value_type = "STRING"
    }
    # A stream's latency_ms is the whole stream (up to the policy's max_stream_seconds): the alert
    # reads the other requests only.
    labels {
      key        = "stream"
      value_type = "STRING"
    }
  }

  label_extractors = {
    product  = "EXTRACT(jsonPayload.product_label)"
    provider = "EXTRACT(jsonPayload.provider)"
    stream   = "EXTRACT(jsonPayload.stream)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "upstream_failures" {
  project = var.project_id
  name    = "${var.name_prefix}_upstream_failures"
  filter  = local.upstream_failure_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "keygate failed upstream attempts"

    labels {
      key        = "provider"
      value_type = "STRING"
    }
    labels {
      key        = "failure"
      value_type = "STRING"
    }
  }

  # Both from a small fixed set: the provider names and keygate's kinds of upstream failure.
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
    failure  = "EXTRACT(jsonPayload.failure)"
  }
}

resource "google_monitoring_alert_policy" "daily_tokens" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: daily token usage of a product over ${var.daily_tokens_alert_threshold}"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "tokens (prompt + completion) per product, last 24 h"
    condition_prometheus_query_language {
      query               = "sum by (product) (increase(${local.promql.tokens_in}_sum[1d])) + sum by (product) (increase(${local.promql.tokens_out}_sum[1d])) > ${var.daily_tokens_alert_threshold}"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A product used more tokens in the last 24 h than expected. Check /admin/usage; block it if it is abuse (docs/runbook.md, \"Abuse response\")."
  }
}

resource "google_monitoring_alert_policy" "failure_rate" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: failure rate over ${var.failure_rate_threshold * 100}%"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "share of requests failing with ${join(", ", var.failure_rate_classes)}"
    condition_prometheus_query_language {
      query               = "sum(rate(${local.promql.failures}{failure=~\"${local.failure_regex}\"}[5m])) / sum(rate(${local.promql.requests}[5m])) > ${var.failure_rate_threshold}"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Upstream, timeout or internal failures are above the threshold. Check the audit records (jsonPayload.failure) by provider, the providers' status pages, and recent rollouts."
  }
}

resource "google_monitoring_alert_policy" "latency" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: p95 latency (not streamed) over ${var.latency_p95_threshold_ms} ms"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "p95 latency of requests not streamed, by provider"
    condition_prometheus_query_language {
      # Not streams: theirs is the time the answer took to stream (minutes for a long one, as
      # coding agents send), which would hold the p95 over any threshold with nothing wrong.
      query               = "histogram_quantile(0.95, sum by (le, provider) (rate(${local.promql.latency}_bucket{stream=\"false\"}[10m]))) > ${var.latency_p95_threshold_ms}"
      duration            = "600s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Requests are slow. Compare with the providers' latency; look for retries and fallbacks in the audit records (attempts)."
  }
}

resource "google_monitoring_alert_policy" "upstream_failures" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: a provider failing over ${var.upstream_failures_per_minute} attempts a minute"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "failed upstream attempts per minute, by provider"
    condition_prometheus_query_language {
      query               = "sum by (provider) (rate(${local.promql.upstream}[10m])) * 60 > ${var.upstream_failures_per_minute}"
      duration            = "600s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A provider keeps failing keygate's attempts (retried, or answered by a fallback model, so the failure rate may stay low). Check the WARNING lines \"upstream attempt failed\" (their failure and upstreamStatus fields) and the provider's status page; a rejected key shows as status 401/403."
  }
}

resource "google_monitoring_alert_policy" "crash" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: a gateway process crashed"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a CRITICAL \"crashed\" line"
    condition_matched_log {
      filter = "${local.container_filter} AND severity=CRITICAL AND jsonPayload.message=~\"^crashed \""
    }
  }

  # Required for a log-match condition: at most one notification per period.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A gateway process hit an exception no code handled and exited (Kubernetes restarts it; its open requests failed). The line carries the stack and, when it happened while serving one, the request id."
  }
}

# Memorystore unreachable (an outage, maintenance gone wrong, the AUTH string changed): keygate keeps
# serving, but each replica counts limits alone (a product gets its limit once per replica), blocks
# set through Redis are not in force and HMAC requests get 503. From the gateway's own gauge
# (/metrics, scraped by Managed Service for Prometheus through k8s/base/podmonitoring.yaml), which
# is 0 while a replica counts alone.
resource "google_monitoring_alert_policy" "redis_down" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: a replica counts limits without Redis"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "keygate_redis_up is 0 on a replica"
    condition_prometheus_query_language {
      query               = "min by (pod) (keygate_redis_up{namespace=\"${var.namespace}\"}) < 1"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Limits count per replica (each replica admits a product's whole limit), blocks set through Redis are not in force and HMAC requests get 503 until Redis answers again. /readyz of a replica says `degraded` with the connection state; check the Memorystore instance and, after an AUTH change, the redis-url secret and the keygate-redis ExternalSecret (docs/runbook.md, \"Key rotation\")."
  }
}

# A secret rotation keygate refused (a malformed, disabled or destroyed new version, access denied):
# the replicas keep the version in force, so nothing breaks yet, but the rotation did not happen and
# the next boot may not read the secret. From the gateway's counter (/metrics, scraped as above).
resource "google_monitoring_alert_policy" "secret_rotation_refused" {
  project               = var.project_id
  display_name          = "keygate ${var.environment}: a secret rotation was refused"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "keygate_secret_refreshes_total refused or failed"
    condition_prometheus_query_language {
      query               = "sum by (secret) (increase(keygate_secret_refreshes_total{namespace=\"${var.namespace}\", result=~\"refused|failed\"}[10m])) > 0"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A new version of a secret was not taken: the ERROR line `secret version refused` (or the one for an unreadable secret) names the secret, the version and each problem, never a value. The version in force stays in force; fix the new version or pin one with API_KEY_SERVER_SECRET_*_VERSION before the old key is revoked (docs/runbook.md, \"Key rotation\")."
  }
}

# Optional: only where the policy file prices the models (daily_cost_alert_threshold_usd set).
resource "google_monitoring_alert_policy" "daily_cost" {
  count                 = var.daily_cost_alert_threshold_usd == null ? 0 : 1
  project               = var.project_id
  display_name          = "keygate ${var.environment}: daily cost of a product over ${var.daily_cost_alert_threshold_usd} USD"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "cost in USD per product, last 24 h"
    condition_prometheus_query_language {
      query               = "sum by (product) (increase(${local.promql.cost}_sum[1d])) > ${coalesce(var.daily_cost_alert_threshold_usd, 0)}"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A product cost more in the last 24 h than expected, at the policy file's prices. Check the audit records (jsonPayload.cost_usd by user and model) and /admin/usage; lower its daily_tokens or block it if it is abuse (docs/runbook.md, \"Abuse response\")."
  }
}

# The load balancer logs every request's full URL (k8s/base/backendconfig.yaml samples all of them),
# query string included. A client that sends its token in the URL, as Gemini's REST examples send
# `?key=`, is refused 400 by keygate, which never logs it, but the load balancer's entry would keep
# it for the log bucket's retention: such entries are not stored. keygate's audit line records each
# of those requests. Only this gateway's backends (their GKE names hold the namespace).
resource "google_logging_project_exclusion" "credential_in_url" {
  project     = var.project_id
  name        = "${var.name_prefix}-${var.environment}-credential-in-url"
  description = "keygate ${var.environment}: load balancer entries whose URL carries a credential (?key=, ?access_token=); keygate refuses and audits such requests itself."
  filter = join(" AND ", [
    "resource.type=\"http_load_balancer\"",
    "resource.labels.backend_service_name:\"${var.namespace}\"",
    "httpRequest.requestUrl=~\"[?&](key|api_key|access_token)=\"",
  ])
}
