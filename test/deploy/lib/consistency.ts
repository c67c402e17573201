import { join } from 'node:path';
import type { K8sObject, Rendered } from './kustomize';
import { moduleArguments, readTfvars } from './terraform';
import type { Violation } from './tools';

/**
 * An overlay and its Terraform environment must agree on what one names and the other creates:
 * the Memorystore range (NetworkPolicy egress ↔ redis_reserved_ip_range), the region (image
 * registry host, SecretStore cluster location ↔ region) and the namespace (overlay ↔
 * keygate-<environment>, which Workload Identity and the log-based metrics are bound to).
 */
export async function checkOverlayAgainstTerraform(rendered: Rendered, terraformEnvDir: string, environment: string): Promise<Violation[]> {
  const v: Violation[] = [];
  const add = (message: string): void => {
    v.push({ where: rendered.target, rule: 'tf-consistency', message });
  };
  const args = await moduleArguments(terraformEnvDir, 'keygate');
  const tfvars = await readTfvars(join(terraformEnvDir, 'terraform.tfvars'));
  const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
  const { objects } = rendered;

  const cidr = redisEgressCidr(objects);
  if (cidr !== args.redis_reserved_ip_range)
    add(`NetworkPolicy Redis egress ${cidr ?? 'missing'} ≠ Terraform redis_reserved_ip_range ${text(args.redis_reserved_ip_range)}`);

  const region = text(tfvars.region);
  for (const image of images(objects)) {
    if (!image.startsWith(`${region}-docker.pkg.dev/`)) add(`image ${image} is not in the ${region} Artifact Registry`);
  }
  for (const store of objects.filter((o) => o.kind === 'SecretStore')) {
    const location = (store.spec as { provider?: { gcpsm?: { auth?: { workloadIdentity?: { clusterLocation?: string } } } } }).provider
      ?.gcpsm?.auth?.workloadIdentity?.clusterLocation;
    if (location !== region) add(`SecretStore ${store.metadata.name} clusterLocation ${location ?? 'unset'} ≠ Terraform region ${region}`);
  }
  if (args.environment !== environment) add(`Terraform environment is ${text(args.environment)}, expected ${environment}`);
  const namespace = objects.find((o) => o.kind === 'Namespace')?.metadata.name;
  if (namespace !== `keygate-${environment}`)
    add(`namespace ${namespace ?? 'missing'} ≠ keygate-${environment} (Terraform binds Workload Identity and the metrics to it)`);
  return v;
}

/** The CIDR of the NetworkPolicy egress rule to Memorystore's TLS port (6378). */
export function redisEgressCidr(objects: readonly K8sObject[]): string | undefined {
  for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy')) {
    const spec = policy.spec as { egress?: { to?: { ipBlock?: { cidr: string } }[]; ports?: { port?: number | string }[] }[] };
    const rule = spec.egress?.find((e) => e.ports?.some((p) => p.port === 6378));
    if (rule) return rule.to?.[0]?.ipBlock?.cidr;
  }
  return undefined;
}

function images(objects: readonly K8sObject[]): string[] {
  return objects
    .filter((o) => o.kind === 'Deployment')
    .flatMap((o) => (o.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers.map((c) => c.image));
}
