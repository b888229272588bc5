"""Real-world payloads the fakes' users need verbatim (tests and the demo world share them)."""

# A real PKCS#10 request (openssl req -subj "/O=system:nodes/CN=system:node:node-9"), as kubelet bootstrap
# sends it in a CertificateSigningRequest's spec.request (base64 of this PEM).
KUBELET_CSR_NODE_9 = """-----BEGIN CERTIFICATE REQUEST-----
MIHwMIGWAgEAMDQxFTATBgNVBAoMDHN5c3RlbTpub2RlczEbMBkGA1UEAwwSc3lz
dGVtOm5vZGU6bm9kZS05MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElt+tVoNm
jexy70BGgMQvCQkIJxQIC6Puom5165LH7fBmXWDBVZt+Ye2j6T6eFsEEdwQXdmCj
gFnqBLfY8EIr7qAAMAoGCCqGSM49BAMCA0kAMEYCIQC80fdgC+GHQR+Ay7Bl3rEI
VUCl6aaYxM6jIOvhvuzuMQIhAOEWlNCV+EkcyVn25noXnOju/Zc2GRIdqpiWMF3+
4XEu
-----END CERTIFICATE REQUEST-----
"""
