import { RootCa, TrustBundle, type IntermediateCa, type IssuedLeaf } from "../../trust/index.ts";
import { createRecordSigner, type RecordSigner } from "../../federation/internal.ts";

export interface ClusterIdentity {
  intermediate: IntermediateCa;
  controller: IssuedLeaf;
  signer: RecordSigner;
}

export interface ClusterSetPki {
  trustDomain: string;
  root: RootCa;
  bundle: TrustBundle;
  clusters: Map<string, ClusterIdentity>;
  identity(cluster: string): ClusterIdentity;
}

/** A shared root, one intermediate per cluster, and each cluster's controller identity, all from trust/. */
export async function createClusterSetPki(clusterNames: readonly string[], trustDomain = "fedgate.test"): Promise<ClusterSetPki> {
  const root = await RootCa.create({ trustDomain });
  const bundle = TrustBundle.create({ trustDomain, certificates: [root.certificate], sequence: 1 });
  const clusters = new Map<string, ClusterIdentity>();
  for (const cluster of clusterNames) {
    const intermediate = await root.issueIntermediate({ cluster });
    const controller = await intermediate.issueLeaf({ spiffeId: `spiffe://${trustDomain}/cluster/${cluster}/controller` });
    const signer = createRecordSigner({ cluster, chainPem: controller.chainPem, keyPem: controller.privateKeyPem ?? "" });
    clusters.set(cluster, { intermediate, controller, signer });
  }
  return {
    trustDomain,
    root,
    bundle,
    clusters,
    identity(cluster) {
      const id = clusters.get(cluster);
      if (!id) throw new RangeError(`no identity for ${cluster}`);
      return id;
    },
  };
}
