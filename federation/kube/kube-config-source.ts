import * as k8s from "@kubernetes/client-node";

/** A kubeconfig file, or (no file) the in-cluster service account, as client-go does. */
export function loadKubeConfig(file: string | undefined): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromCluster();
  return kc;
}
