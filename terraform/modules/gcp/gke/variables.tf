variable "project_id" {
  type        = string
  description = "The project that owns the cluster."
}

variable "name" {
  type        = string
  description = "Cluster name (the SecretStore in k8s/ names it too)."
}

variable "location" {
  type        = string
  description = "Region of the (regional) cluster."
}

variable "network_id" {
  type        = string
  description = "VPC id the cluster runs in."
}

variable "subnetwork_id" {
  type        = string
  description = "Subnet id for the nodes."
}

variable "pods_range_name" {
  type        = string
  description = "Secondary range of the subnet used for pods."
}

variable "services_range_name" {
  type        = string
  description = "Secondary range of the subnet used for services."
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "/28 range for the control plane's private endpoint."
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Ranges allowed to reach the control plane (operators' VPN, the Argo CD cluster's NAT)."
  default     = []
}

variable "release_channel" {
  type        = string
  description = "GKE release channel: RAPID, REGULAR or STABLE."
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "machine_type" {
  type        = string
  description = "Machine type of the node pool."
  default     = "e2-standard-4"
}

variable "min_nodes" {
  type        = number
  description = "Smallest total node count of the pool (all zones)."
  default     = 3
}

variable "max_nodes" {
  type        = number
  description = "Largest total node count of the pool (all zones)."
  default     = 9
}

variable "maintenance_start_time" {
  type        = string
  description = "Daily maintenance window start, HH:MM in UTC."
  default     = "03:00"
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse `terraform destroy` of the cluster."
  default     = true
}
