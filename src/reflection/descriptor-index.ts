/**
 * The descriptors that gRPC server reflection serves: every file that declares
 * a served service, and every file those import, transitively (the
 * google/protobuf ones included), so a client such as grpcurl can build every
 * request and response type from the answers alone, without .proto files.
 *
 * Files and types come from a protobuf-es FileRegistry built from the
 * generated code's embedded descriptors. The registry resolves messages
 * (nested ones too), enums, extensions and services by name; the members that
 * reflection clients also ask for by name (methods, fields, oneofs, enum
 * values and map entry messages) are indexed here, because a registry does
 * not hold them.
 */
import { create, toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { createFileRegistry, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

export class DescriptorIndex {
  /** Fully qualified names of the served services, in the order given. */
  readonly serviceNames: readonly string[];
  readonly #registry: FileRegistry;
  /** Methods, fields, oneofs and enum values: full name → the file that declares them. */
  readonly #members = new Map<string, string>();
  /** Serialized FileDescriptorProto by file name, encoded once. */
  readonly #encoded = new Map<string, Uint8Array>();

  constructor(services: readonly DescService[]) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))];
    const files = withDependencies(services.map((s) => s.file));
    // createFileRegistry re-links the files by name, so a dependency that is
    // missing would throw here, at start, rather than surface as a broken
    // `describe` in an operator's terminal.
    this.#registry = createFileRegistry(create(FileDescriptorSetSchema, { file: files.map((f) => f.proto) }));
    for (const type of this.#registry) {
      const fileName = type.file.proto.name;
      switch (type.kind) {
        case "service":
          for (const method of type.methods) this.#members.set(`${type.typeName}.${method.name}`, fileName);
          break;
        case "message":
          for (const field of type.fields) this.#members.set(`${type.typeName}.${field.name}`, fileName);
          for (const oneof of type.oneofs) this.#members.set(`${type.typeName}.${oneof.name}`, fileName);
          // Map entry messages (e.g. Struct.FieldsEntry) are real nested types in the descriptor, but not registry entries.
          for (const nested of type.proto.nestedType) {
            if (nested.options?.mapEntry === true) this.#members.set(`${type.typeName}.${nested.name}`, fileName);
          }
          break;
        case "enum": {
          // Enum values are scoped like C++ enumerators: siblings of their enum, not children.
          const scope = type.parent?.typeName ?? type.file.proto.package;
          for (const value of type.values) this.#members.set(scope === "" ? value.name : `${scope}.${value.name}`, fileName);
          break;
        }
        case "extension":
          break;
      }
    }
  }

  /** The file with this name (e.g. "session/v1/session.proto"), or undefined. */
  file(fileName: string): DescFile | undefined {
    return this.#registry.getFile(fileName);
  }

  /**
   * The file that declares a fully qualified symbol: a service, method,
   * message (nested and map entries too), field, oneof, enum, enum value or
   * extension.
   * A leading dot, as in descriptor type references, is accepted.
   */
  fileContainingSymbol(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const type = this.#registry.get(name);
    if (type !== undefined) return type.file;
    const fileName = this.#members.get(name);
    return fileName === undefined ? undefined : this.#registry.getFile(fileName);
  }

  /** The file that declares extension `number` of message `extendee`; undefined if there is none. */
  fileContainingExtension(extendee: string, number: number): DescFile | undefined {
    const message = this.#registry.getMessage(extendee);
    if (message === undefined) return undefined;
    return this.#registry.getExtensionFor(message, number)?.file;
  }

  /** The numbers of every extension of a message, sorted; undefined for an unknown message. */
  extensionNumbers(extendee: string): number[] | undefined {
    if (this.#registry.getMessage(extendee) === undefined) return undefined;
    const numbers: number[] = [];
    for (const type of this.#registry) {
      if (type.kind === "extension" && type.extendee.typeName === extendee) numbers.push(type.number);
    }
    return numbers.sort((a, b) => a - b);
  }

  /**
   * The serialized file, followed by its transitive imports that are not in
   * `sent` (what this reflection stream already sent), as grpc-go does: the
   * requested file always comes first, even when it was sent before, and
   * every file returned is added to `sent`.
   */
  encodeWithDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const queue: DescFile[] = [file];
    const seen = new Set<string>();
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const name = next.proto.name;
      if (seen.has(name)) continue;
      seen.add(name);
      if (out.length === 0 || !sent.has(name)) {
        sent.add(name);
        out.push(this.#encode(next));
      }
      queue.push(...next.dependencies);
    }
    return out;
  }

  #encode(file: DescFile): Uint8Array {
    const name = file.proto.name;
    let bytes = this.#encoded.get(name);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.#encoded.set(name, bytes);
    }
    return bytes;
  }
}

/** The files and everything they import, each once, imports before the files that import them. */
function withDependencies(roots: readonly DescFile[]): DescFile[] {
  const ordered: DescFile[] = [];
  const visited = new Set<string>();
  const visit = (file: DescFile): void => {
    if (visited.has(file.proto.name)) return;
    visited.add(file.proto.name);
    for (const dependency of file.dependencies) visit(dependency);
    ordered.push(file);
  };
  for (const root of roots) visit(root);
  return ordered;
}
