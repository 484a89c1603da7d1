/**
 * Client-certificate principals (mutual TLS). The TLS layer verifies the
 * certificate against TLS_CLIENT_CA_FILE; MTLS_PRINCIPALS_FILE maps the
 * verified certificate's subject common name to a tenant and scopes:
 *
 *   [{ "cn": "billing-api", "tenant": "acme", "scopes": ["read", "write"] }]
 *
 * A verified certificate whose CN is not listed grants nothing. An entry may
 * name a `user`, as an API key may (see principal.ts).
 */
import { parseGrant, type Principal } from "./principal.js";

export class CertPrincipalsError extends Error {
  override readonly name = "CertPrincipalsError";
}

export class CertPrincipals {
  private constructor(private readonly byCn: ReadonlyMap<string, Principal>) {}

  static parse(json: string): CertPrincipals {
    let list: unknown;
    try {
      list = JSON.parse(json);
    } catch {
      throw new CertPrincipalsError("is not valid JSON");
    }
    if (!Array.isArray(list)) throw new CertPrincipalsError("must be a JSON array of { cn, tenant, scopes, user? }");
    const byCn = new Map<string, Principal>();
    list.forEach((item: unknown, i) => {
      const where = `entry ${i + 1}`;
      const { cn, tenant, scopes, user } = (typeof item === "object" && item !== null ? item : {}) as Record<string, unknown>;
      if (typeof cn !== "string" || cn === "") throw new CertPrincipalsError(`${where}: cn must be a non-empty string`);
      const grant = parseGrant(tenant, scopes, user);
      if (typeof grant === "string") throw new CertPrincipalsError(`${where} (${cn}): ${grant}`);
      if (byCn.has(cn)) throw new CertPrincipalsError(`${where}: cn ${cn} is listed twice`);
      byCn.set(cn, { id: `cert:${cn}`, ...grant });
    });
    return new CertPrincipals(byCn);
  }

  principal(commonName: string): Principal | undefined {
    return this.byCn.get(commonName);
  }
}
