variable "project_id" {
  type        = string
  description = "The project that owns the instance."
}

variable "name" {
  type        = string
  description = "Instance name."
}

variable "region" {
  type        = string
  description = "Instance region (the cluster's)."
}

variable "tier" {
  type        = string
  description = "BASIC (single node) or STANDARD_HA (replicated, automatic failover)."
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.tier)
    error_message = "tier must be BASIC or STANDARD_HA."
  }
}

variable "memory_size_gb" {
  type        = number
  description = "Memory size in GiB."
  default     = 1
}

variable "redis_version" {
  type        = string
  description = "Redis version."
  default     = "REDIS_7_2"
}

variable "network_id" {
  type        = string
  description = "VPC the instance is peered with."
}

variable "reserved_ip_range" {
  type        = string
  description = "The instance's /29, e.g. 10.60.0.0/29. Must equal the Redis rule of k8s/overlays/<env> NetworkPolicy."

  validation {
    condition     = can(cidrhost(var.reserved_ip_range, 0)) && endswith(var.reserved_ip_range, "/29")
    error_message = "reserved_ip_range must be a /29 CIDR."
  }
}
