variable "project_id" {
  type        = string
  description = "The project whose logs and alerts these are."
}

variable "environment" {
  type        = string
  description = "Environment name shown in alert titles."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the gateway (filters the audit records)."
}

variable "container_name" {
  type        = string
  description = "Container name of the gateway (k8s/base/deployment.yaml)."
  default     = "gateway"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the log-based metric names."
  default     = "keygate"
}

variable "daily_tokens_alert_threshold" {
  type        = number
  description = "Alert when one product uses more tokens (prompt + completion) than this in 24 h."
}

variable "daily_cost_alert_threshold_usd" {
  type        = number
  description = "Alert when one product costs more than this many US dollars in 24 h, at the policy file's prices; null: no alert."
  default     = null

  validation {
    condition     = var.daily_cost_alert_threshold_usd == null || try(var.daily_cost_alert_threshold_usd > 0, false)
    error_message = "daily_cost_alert_threshold_usd must be above 0, or null for no alert."
  }
}

variable "failure_rate_threshold" {
  type        = number
  description = "Alert when this share of requests fails with one of failure_rate_classes (0-1)."
  default     = 0.05

  validation {
    condition     = var.failure_rate_threshold > 0 && var.failure_rate_threshold < 1
    error_message = "failure_rate_threshold must be between 0 and 1."
  }
}

variable "failure_rate_classes" {
  type        = list(string)
  description = "Audit failure classes that count as the service failing (not the caller)."
  default     = ["upstream", "timeout", "internal"]
}

variable "latency_p95_threshold_ms" {
  type        = number
  description = "Alert when the p95 latency of a provider's requests that were not streamed exceeds this (ms). LLM calls are slow: leave room."
  default     = 45000
}

variable "upstream_failures_per_minute" {
  type        = number
  description = "Alert when one provider fails more upstream attempts a minute than this (10-minute average), fallbacks or not."
  default     = 30

  validation {
    condition     = var.upstream_failures_per_minute > 0
    error_message = "upstream_failures_per_minute must be positive."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids (projects/<p>/notificationChannels/<id>) the alerts go to."
  default     = []
}
