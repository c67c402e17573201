variable "project_id" {
  type        = string
  description = "The project of the address and TLS policy."
}

variable "name" {
  type        = string
  description = "Name of both (k8s/base ingress.yaml and frontendconfig.yaml refer to it)."
  default     = "keygate"
}
