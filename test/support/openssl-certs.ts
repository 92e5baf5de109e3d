import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratchDir } from "../env/index.ts";

export interface Pem {
  cert: string;
  key: string;
}

/**
 * Certificates made by the openssl CLI, independent of fedgate's own PKI, for
 * tests that must not trust the code they check.
 */
export class OpensslCa {
  readonly dir: string;
  readonly ca: Pem;
  private serial = 1;

  constructor(name: string) {
    this.dir = scratchDir(`openssl-${name}`);
    const key = join(this.dir, "ca.key");
    const cert = join(this.dir, "ca.crt");
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    openssl(["req", "-x509", "-new", "-key", key, "-out", cert, "-days", "1", "-subj", `/CN=${name} test CA`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    this.ca = { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") };
  }

  /** A leaf for `commonName`, valid for localhost, usable as TLS server and client. */
  issue(commonName: string): Pem {
    const base = join(this.dir, `leaf-${this.serial++}`);
    const ext = `${base}.ext`;
    writeFileSync(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n");
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`]);
    openssl(["req", "-new", "-key", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${commonName}`]);
    openssl(["x509", "-req", "-in", `${base}.csr`, "-CA", join(this.dir, "ca.crt"), "-CAkey", join(this.dir, "ca.key"), "-set_serial", String(this.serial), "-days", "1", "-extfile", ext, "-out", `${base}.crt`]);
    return { cert: readFileSync(`${base}.crt`, "utf8"), key: readFileSync(`${base}.key`, "utf8") };
  }
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}
