// pg ships no types. Its DefinitelyTyped types are installed under the alias pg-types-dev (a dev dependency):
// under their own name, @types/pg, they are node-pg-migrate's optional peer, which npm then installs (with
// @types/node) in the production tree too. This maps the module name to them for the type checker only.
declare module "pg" {
  export * from "pg-types-dev";
  import pg from "pg-types-dev";
  export default pg;
}
