variable "project_id" {
  type        = string
  description = "The project of the service account."
}

variable "account_id" {
  type        = string
  description = "Service account id; k8s/overlays/<env> annotates the Kubernetes service account with <id>@<project>.iam.gserviceaccount.com."
  default     = "keygate-runtime"
}

variable "workload_pool" {
  type        = string
  description = "The cluster's Workload Identity pool (<project>.svc.id.goog)."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the gateway."
}

variable "k8s_service_account" {
  type        = string
  description = "Kubernetes service account of the gateway."
  default     = "keygate"
}
