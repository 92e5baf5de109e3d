/**
 * The single entry to @peculiar/x509 inside the trust module. @peculiar/x509
 * uses tsyringe, which needs the Reflect metadata API, so this file imports the
 * `reflect-metadata` package before the library; every trust file imports the
 * library from here, never directly, so that order always holds.
 */
import "reflect-metadata";
export * as x509 from "@peculiar/x509";
