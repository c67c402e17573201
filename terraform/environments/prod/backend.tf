# State in a GCS bucket of the environment's project (versioned; created once by hand, see
# docs/runbook.md). The bucket is given at init, so no project id is written here:
#   terraform init -backend-config="bucket=<project>-tfstate"
terraform {
  backend "gcs" {
    prefix = "keygate/prod"
  }
}
