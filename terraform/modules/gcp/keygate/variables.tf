variable "project_id" {
  type        = string
  description = "The environment's GCP project."
}

variable "environment" {
  type        = string
  description = "dev, stage or prod: names the Kubernetes namespace (keygate-<environment>)."

  validation {
    condition     = contains(["dev", "stage", "prod"], var.environment)
    error_message = "environment must be dev, stage or prod."
  }
}

variable "region" {
  type        = string
  description = "Region of the cluster, Redis and registry."
}

variable "nodes_cidr" {
  type        = string
  description = "Subnet range of the GKE nodes."
}

variable "pods_cidr" {
  type        = string
  description = "Secondary range of the GKE pods."
}

variable "services_cidr" {
  type        = string
  description = "Secondary range of the GKE services."
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "/28 for the GKE control plane."
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Ranges allowed to reach the GKE control plane."
  default     = []
}

variable "release_channel" {
  type        = string
  description = "GKE release channel."
  default     = "REGULAR"
}

variable "machine_type" {
  type        = string
  description = "GKE node machine type."
  default     = "e2-standard-4"
}

variable "min_nodes" {
  type        = number
  description = "Smallest total node count."
  default     = 3
}

variable "max_nodes" {
  type        = number
  description = "Largest total node count."
  default     = 9
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to destroy the cluster."
  default     = true
}

variable "redis_tier" {
  type        = string
  description = "Memorystore tier: BASIC or STANDARD_HA."
  default     = "STANDARD_HA"
}

variable "redis_memory_size_gb" {
  type        = number
  description = "Memorystore size in GiB."
  default     = 1
}

variable "redis_reserved_ip_range" {
  type        = string
  description = "Memorystore /29; the same CIDR as the Redis egress rule of k8s/overlays/<environment>."
}

variable "github_repository" {
  type        = string
  description = "<owner>/<name> of the repository whose workflows push images."
}

variable "github_repository_id" {
  type        = string
  description = "Numeric id of that repository (checked with the name: a name can be re-registered, an id cannot)."
}

variable "github_subjects" {
  type        = list(string)
  description = "GitHub OIDC subjects allowed to deploy (repo:<owner>/<name>:ref:refs/heads/main, repo:<owner>/<name>:environment:<env>)."
}

variable "promotion_source" {
  type = object({
    project_id = string
    location   = string
    repository = string
  })
  description = "The previous environment's repository images are promoted from (null for dev)."
  default     = null
}

variable "iap_members" {
  type        = list(string)
  description = "IAM members allowed through IAP in access mode A (group:..., user:..., serviceAccount:...)."
  default     = []
}

variable "ip_allowlist_enabled" {
  type        = bool
  description = "Access mode B: Cloud Armor admits only ip_allowlist."
  default     = false
}

variable "ip_allowlist" {
  type        = list(string)
  description = "Office/VPN ranges for access mode B."
  default     = []
}

variable "blocked_ip_ranges" {
  type        = list(string)
  description = "Ranges Cloud Armor denies (abuse response)."
  default     = []
}

variable "rate_limit_requests_per_minute" {
  type        = number
  description = "Cloud Armor per-IP rate limit per minute: a flood guard above keygate's own limits (see modules/gcp/cloud-armor)."
  default     = 6000
}

variable "waf_body_rules_preview" {
  type        = bool
  description = "Body-inspecting OWASP rule sets only log (see modules/gcp/cloud-armor)."
  default     = true
}

variable "daily_tokens_alert_threshold" {
  type        = number
  description = "Alert when a product uses more tokens than this in 24 h."
}

variable "daily_cost_alert_threshold_usd" {
  type        = number
  description = "Alert when a product costs more than this many US dollars in 24 h, at the policy file's prices; null: no alert."
  default     = null
}

variable "failure_rate_threshold" {
  type        = number
  description = "Alert when this share of requests fails on the service side."
  default     = 0.05
}

variable "latency_p95_threshold_ms" {
  type        = number
  description = "Alert when the p95 latency of requests not streamed exceeds this (ms)."
  default     = 45000
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids for the alerts."
  default     = []
}
