/**
 * The unary methods the router serves, by request path, taken from the same
 * service implementations connect serves: a router wrapper records what the
 * routes register and passes everything on, so both paths call the same
 * objects (one `routes` call, one implementation).
 */
import { createMethodImplSpec, createServiceImplSpec, type ConnectRouter, type MethodImplSpec } from "@connectrpc/connect";
import type { DescMethodUnary } from "@bufbuild/protobuf";

/** A unary method's implementation, as connect's own handlers hold it. */
export type UnaryMethodSpec = Extract<MethodImplSpec, { kind: "unary" }> & { readonly method: DescMethodUnary };

export class UnaryMethods {
  private readonly byPath = new Map<string, UnaryMethodSpec>();

  /** The unary method served at `path` ("/package.Service/Method"), if any. */
  get(path: string): UnaryMethodSpec | undefined {
    return this.byPath.get(path);
  }

  get size(): number {
    return this.byPath.size;
  }

  /**
   * A router that registers on `router` and records every unary method. A
   * service or method registered with options of its own (protocols, limits)
   * is left to connect alone, so those options keep their meaning.
   */
  recording(router: ConnectRouter): ConnectRouter {
    const recorder: ConnectRouter = {
      handlers: router.handlers,
      service: (service, implementation, options) => {
        router.service(service, implementation, options);
        if (options === undefined) {
          const spec = createServiceImplSpec(service, implementation);
          for (const method of Object.values(spec.methods)) this.add(method);
        }
        return recorder;
      },
      rpc: (method, implementation, options) => {
        router.rpc(method, implementation, options);
        if (options === undefined) this.add(createMethodImplSpec(method, implementation) as MethodImplSpec);
        return recorder;
      },
    };
    return recorder;
  }

  private add(spec: MethodImplSpec): void {
    if (spec.kind !== "unary") return;
    this.byPath.set(`/${spec.method.parent.typeName}/${spec.method.name}`, spec as UnaryMethodSpec);
  }
}
