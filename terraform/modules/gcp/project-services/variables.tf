variable "project_id" {
  type        = string
  description = "The project to enable the APIs in."
}

variable "services" {
  type        = list(string)
  description = "API service names to enable."
  default = [
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "iap.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "redis.googleapis.com",
    "secretmanager.googleapis.com",
    "sts.googleapis.com",
  ]
}
