// Package sbom finds and reads the SBOMs a build attached to a manifest,
// so that sign can attest each of them, byte for byte, as that manifest's
// SBOM (sign --sbom attached) and verify can tell a node that has one from
// one that has none.
//
// Builders attach SBOMs in two ways, and Find reads both:
//   - cosign's sha256-<hex>.sbom tag in the manifest's repository, as
//     `cosign attach sbom` writes it and ko v0.19.1 still writes it for
//     every image and index it builds (ko#1268): a manifest whose layer is
//     the document, its media type the document's (text/spdx+json);
//   - an OCI 1.1 referrer of the manifest whose artifact type is an SBOM
//     media type (`oras attach --artifact-type application/spdx+json`,
//     syft): listed by the registry's referrers API or, where it has none,
//     in the sha256-<hex> fallback tag index that oras and cosign write.
//
// Only JSON documents are attested: SPDX 2.x/3 JSON (predicate type
// https://spdx.dev/Document, cosign's spdxjson) and CycloneDX JSON
// (https://cyclonedx.org/bom, cosign's cyclonedx), as the predicate of an
// in-toto statement must be JSON. An SBOM in another format (SPDX
// tag-value, CycloneDX XML, syft's own JSON) is reported Skipped with why,
// never attested as something it is not.
package sbom
