import { join } from 'node:path';
import type { K8sObject, Rendered } from './kustomize';
import { effectiveEnv } from './rules';
import { localValue, moduleArguments, readTfvars, variableDefault } from './terraform';
import type { Violation } from './tools';

/**
 * An overlay and its Terraform environment must agree on what one names and the other creates:
 * the Memorystore range (NetworkPolicy egress ↔ redis_reserved_ip_range), the region (image
 * registry host, SecretStore cluster location ↔ region), the namespace (overlay ↔
 * keygate-<environment>, which Workload Identity and the log-based metrics are bound to), and the
 * names in {@link checkOverlayNames}.
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

  const source = args.source;
  if (typeof source !== 'string') add('module "keygate" has no source');
  else for (const message of await checkOverlayNames(objects, join(terraformEnvDir, source))) add(message);
  return v;
}

/** The secret ids the gateway reads by default (SPEC §2), by the variable that renames each. */
const GATEWAY_SECRETS: readonly [variable: string, secretId: string][] = [
  ['API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME', 'openai-api-keys'],
  ['API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME', 'jwt-public-keys'],
  ['API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME', 'hmac-secrets'],
];

/**
 * The names an overlay shares with the Terraform module `keygateDir` (modules/gcp/keygate) and
 * the modules it calls, each mismatch as a message:
 * - Workload Identity: the gateway's Kubernetes service account is the one Terraform binds
 *   (workload-identity `k8s_service_account`), annotated with Terraform's runtime service account
 *   (`account_id`@<project>), in the project the gateway, the SecretStore and the image use;
 * - secrets: every secret the gateway reads from Secret Manager and every ExternalSecret key is
 *   one Terraform creates, and so one its per-secret IAM lets the runtime account read;
 * - the GKE cluster the SecretStore names, the static IP and TLS policy the Ingress and
 *   FrontendConfig name (edge), the Cloud Armor policy the BackendConfig names;
 * - the host: the Ingress rule, the ManagedCertificate and API_KEY_SERVER_PUBLIC_URL.
 */
export async function checkOverlayNames(objects: readonly K8sObject[], keygateDir: string): Promise<string[]> {
  const messages: string[] = [];
  const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
  /** A child module's setting: the literal the keygate module passes, else the child's default. */
  const setting = async (call: string, variable: string): Promise<string> => {
    const args = await moduleArguments(keygateDir, call);
    const value = args[variable] ?? (await variableDefault(join(keygateDir, text(args.source)), variable));
    return text(value);
  };
  const ksaName = await setting('runtime_identity', 'k8s_service_account');
  const accountId = await setting('runtime_identity', 'account_id');
  const clusterName = await setting('gke', 'name');
  const edgeName = await setting('edge', 'name');
  const armorName = await setting('cloud_armor', 'name');
  const secretIds = new Set(
    [await localValue(keygateDir, 'app_secret_ids'), await localValue(keygateDir, 'redis_secret_ids')].flatMap((l) =>
      Array.isArray(l) ? l.map(text) : [],
    ),
  );

  const deployment = objects.find((o) => o.kind === 'Deployment');
  type Container = Parameters<typeof effectiveEnv>[0] & { image?: string };
  const pod = (deployment?.spec as { template?: { spec?: { serviceAccountName?: string; containers?: Container[] } } } | undefined)
    ?.template?.spec;
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o]));
  const container = pod?.containers?.[0];
  const env = container ? effectiveEnv(container, configMaps) : new Map<string, string>();
  const project = env.get('GOOGLE_CLOUD_PROJECT');
  if (!project) messages.push('the gateway has no GOOGLE_CLOUD_PROJECT');

  // Workload Identity.
  if (pod?.serviceAccountName !== ksaName)
    messages.push(`Deployment runs as ServiceAccount ${pod?.serviceAccountName ?? 'default'}, Terraform binds ${ksaName}`);
  const ksa = objects.find((o) => o.kind === 'ServiceAccount' && o.metadata.name === ksaName);
  const expected = `${accountId}@${project}.iam.gserviceaccount.com`;
  const annotation = ksa?.metadata.annotations?.['iam.gke.io/gcp-service-account'];
  if (annotation !== expected)
    messages.push(`ServiceAccount ${ksaName} is annotated ${annotation ?? 'with nothing'}, Terraform's runtime account is ${expected}`);
  const imageProject = container?.image?.split('/')[1];
  if (imageProject !== project) messages.push(`image ${container?.image ?? 'missing'} is not in project ${project}`);
  for (const store of objects.filter((o) => o.kind === 'SecretStore')) {
    const gcpsm = (
      store.spec as {
        provider?: {
          gcpsm?: {
            projectID?: string;
            auth?: { workloadIdentity?: { clusterName?: string; clusterProjectID?: string; serviceAccountRef?: { name?: string } } };
          };
        };
      }
    ).provider?.gcpsm;
    const wi = gcpsm?.auth?.workloadIdentity;
    if (gcpsm?.projectID !== project || wi?.clusterProjectID !== project)
      messages.push(
        `SecretStore ${store.metadata.name} reads project ${gcpsm?.projectID} (cluster ${wi?.clusterProjectID}), not ${project}`,
      );
    if (wi?.clusterName !== clusterName)
      messages.push(`SecretStore ${store.metadata.name} names cluster ${wi?.clusterName}, Terraform's is ${clusterName}`);
    if (wi?.serviceAccountRef?.name !== ksaName)
      messages.push(
        `SecretStore ${store.metadata.name} authenticates as ${wi?.serviceAccountRef?.name}, not ${ksaName} (the account Terraform lets read the secrets)`,
      );
  }

  // Secrets: read only what Terraform creates (and grants the runtime account, per secret).
  const read: string[] = [];
  if (env.get('USE_SECRET_MANAGER') === 'true') {
    for (const [variable, secretId] of GATEWAY_SECRETS) {
      if (variable.includes('JWT') && !env.has('API_KEY_SERVER_JWT_ISSUER')) continue;
      read.push(env.get(variable) ?? secretId);
    }
  }
  for (const external of objects.filter((o) => o.kind === 'ExternalSecret')) {
    const data = (external.spec as { data?: { remoteRef?: { key?: string } }[] }).data ?? [];
    read.push(...data.flatMap((d) => (d.remoteRef?.key ? [d.remoteRef.key] : [])));
  }
  for (const secret of read) {
    if (!secretIds.has(secret))
      messages.push(`secret ${secret} is read, but Terraform creates (and grants access to) only ${[...secretIds].join(', ')}`);
  }

  // The edge.
  const ingress = objects.find((o) => o.kind === 'Ingress');
  const staticIp = ingress?.metadata.annotations?.['kubernetes.io/ingress.global-static-ip-name'];
  if (staticIp !== edgeName) messages.push(`Ingress uses static IP ${staticIp ?? 'none'}, Terraform reserves ${edgeName}`);
  for (const frontend of objects.filter((o) => o.kind === 'FrontendConfig')) {
    const policy = (frontend.spec as { sslPolicy?: string }).sslPolicy;
    if (policy !== edgeName)
      messages.push(`FrontendConfig ${frontend.metadata.name} uses SSL policy ${policy}, Terraform creates ${edgeName}`);
  }
  for (const backend of objects.filter((o) => o.kind === 'BackendConfig')) {
    const policy = (backend.spec as { securityPolicy?: { name?: string } }).securityPolicy?.name;
    if (policy !== armorName)
      messages.push(`BackendConfig ${backend.metadata.name} uses Cloud Armor policy ${policy}, Terraform creates ${armorName}`);
  }

  // One host name throughout.
  const hosts = new Set<string>();
  for (const rule of (ingress?.spec as { rules?: { host?: string }[] } | undefined)?.rules ?? []) hosts.add(rule.host ?? '*');
  for (const cert of objects.filter((o) => o.kind === 'ManagedCertificate')) {
    for (const domain of (cert.spec as { domains?: string[] }).domains ?? []) hosts.add(domain);
  }
  const publicUrl = env.get('API_KEY_SERVER_PUBLIC_URL');
  if (publicUrl) hosts.add(new URL(publicUrl).hostname);
  if (hosts.size !== 1)
    messages.push(`the Ingress host, the ManagedCertificate and API_KEY_SERVER_PUBLIC_URL name ${[...hosts].join(', ')}`);
  return messages;
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
