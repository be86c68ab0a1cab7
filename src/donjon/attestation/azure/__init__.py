"""Azure confidential VMs: the paravisor's HCL report, the vTPM quote, and the pipeline.

On Azure a paravisor (the HCL) runs below the guest and keeps the hardware
report in the vTPM (NV index ``0x01400001``). That report's ``report_data``
binds a runtime-claims JSON holding the vTPM attestation key; a TPM quote by
that key, over the PCRs and a caller-chosen nonce, gives freshness and the boot
chain. The hardware report itself is judged by the SNP verifier (or, for TDX,
the DCAP verifier): this package wraps them and never copies them.

* ``hcl``: the HCL report layout (header, hardware area, IGVM request data);
* ``claims``: the runtime-claims JSON, parsed strictly;
* ``tpm``: TPMS_ATTEST, TPMT_SIGNATURE and PCR selections (TPM 2.0 Part 2);
* ``tdreport``: the TDREPORT an Azure TDX HCL report holds;
* ``evidence``: Donjon's evidence extension and Trustee's JSON forms;
* ``policy``/``appraise``: the ``[azure]`` section and its checks;
* ``verify``/``entry``: the pipeline and the registry entries.
"""
