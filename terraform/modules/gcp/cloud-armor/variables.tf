variable "project_id" {
  type        = string
  description = "The project of the policy."
}

variable "name" {
  type        = string
  description = "Policy name (k8s/base/backendconfig.yaml securityPolicy.name)."
  default     = "keygate"
}

variable "ip_allowlist_enabled" {
  type        = bool
  description = "Access mode B: admit only ip_allowlist (use with the k8s ip-allowlist component, which turns IAP off)."
  default     = false
}

variable "ip_allowlist" {
  type        = list(string)
  description = "Office/VPN CIDR ranges admitted in allowlist mode."
  default     = []

  validation {
    condition     = alltrue([for c in var.ip_allowlist : can(cidrhost(c, 0))])
    error_message = "ip_allowlist entries must be CIDR ranges."
  }
}

variable "blocked_ip_ranges" {
  type        = list(string)
  description = "Ranges denied outright (abuse response)."
  default     = []

  validation {
    condition     = alltrue([for c in var.blocked_ip_ranges : can(cidrhost(c, 0))])
    error_message = "blocked_ip_ranges entries must be CIDR ranges."
  }
}

variable "rate_limit_requests_per_minute" {
  type        = number
  description = "Requests per minute per client IP before Cloud Armor answers 429: a flood guard, set well above keygate's own limits (callers behind one NAT share an IP, and this 429 has no audit line or Retry-After)."
  default     = 6000
}

variable "waf_sensitivity" {
  type        = number
  description = "OWASP CRS paranoia level of the preconfigured rules (1-4)."
  default     = 1

  validation {
    condition     = var.waf_sensitivity >= 1 && var.waf_sensitivity <= 4
    error_message = "waf_sensitivity must be between 1 and 4."
  }
}

variable "waf_body_rules_preview" {
  type        = bool
  description = "Run the rule sets that match request bodies (sqli, xss, lfi, rfi, rce, protocolattack, sessionfixation, java, nodejs) in preview (log only)."
  default     = true
}
