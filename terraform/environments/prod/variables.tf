variable "project_id" {
  type        = string
  description = "The environment's GCP project (set TF_VAR_project_id; never committed)."
}

variable "region" {
  type        = string
  description = "Region of the cluster, Redis and registry."
}

variable "github_repository" {
  type        = string
  description = "<owner>/<name> of this repository on GitHub."
}

variable "github_repository_id" {
  type        = string
  description = "Numeric id of this repository on GitHub (gh api repos/<owner>/<name> --jq .id)."
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Ranges allowed to reach the GKE control plane (operators, the Argo CD cluster)."
  default     = []
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids for the alerts."
  default     = []
}

variable "iap_members" {
  type        = list(string)
  description = "IAM members allowed through IAP (access mode A), e.g. group:keygate-users@example.com."
  default     = []
}

variable "ip_allowlist_enabled" {
  type        = bool
  description = "Access mode B (IP allowlist instead of IAP); see docs/runbook.md."
  default     = false
}

variable "ip_allowlist" {
  type        = list(string)
  description = "Office/VPN ranges admitted in access mode B."
  default     = []
}

variable "blocked_ip_ranges" {
  type        = list(string)
  description = "Ranges Cloud Armor denies (abuse response)."
  default     = []
}

variable "daily_tokens_alert_threshold" {
  type        = number
  description = "Alert when one product uses more tokens than this in 24 h."
}

variable "daily_cost_alert_threshold_usd" {
  type        = number
  description = "Alert when one product costs more than this many US dollars in 24 h, at the policy file's prices (set them first); null: no alert."
  default     = null
}

variable "promotion_source_project_id" {
  type        = string
  description = "Project of the previous environment, whose registry images are promoted from."
}
