variable "project_id" {
  type        = string
  description = "The project that owns the network."
}

variable "region" {
  type        = string
  description = "Region of the subnet, router and NAT."
}

variable "name" {
  type        = string
  description = "Name of the VPC; the subnet, router and NAT are named after it."
}

variable "nodes_cidr" {
  type        = string
  description = "Primary range of the subnet (GKE nodes)."
}

variable "pods_cidr" {
  type        = string
  description = "Secondary range for GKE pods."
}

variable "services_cidr" {
  type        = string
  description = "Secondary range for GKE services."
}
