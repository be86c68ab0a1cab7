"""Intel DCAP: what SGX and TDX quotes share (layout, PCK chain, collateral, TCB algorithm).

``sgx/`` and ``tdx/`` hold what differs: their policy sections and registry entries.
"""
