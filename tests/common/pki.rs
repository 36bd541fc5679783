//! Certificates for the DICOM TLS tests, made per test with rcgen and written as PEM files:
//! a CA; a server certificate for the IP address 127.0.0.1 and a client certificate, both
//! issued by it; a self-signed (untrusted) client certificate; and a server certificate for
//! 127.0.0.1 issued by another CA (a PACS whose certificate nobody here trusts).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Write `ca.pem`, `server.{pem,key}`, `client.{pem,key}`, `rogue.{pem,key}` and
    /// `rogue-server.{pem,key}` into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        let (ca, ca_key) = new_ca("Tsunagi test CA");
        pki.write("ca.pem", ca.pem());
        for (name, san) in [("server", "127.0.0.1"), ("client", "client.example")] {
            pki.leaf(name, san, &ca, &ca_key);
        }
        let rogue = rcgen::generate_simple_self_signed(vec!["rogue.example".into()]).unwrap();
        pki.write("rogue.pem", rogue.cert.pem());
        pki.write("rogue.key", rogue.key_pair.serialize_pem());
        let (other_ca, other_key) = new_ca("Some other CA");
        pki.leaf("rogue-server", "127.0.0.1", &other_ca, &other_key);
        pki
    }

    /// The path of one of its files, as a string (for configuration and tool arguments).
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn write(&self, name: &str, text: String) {
        std::fs::write(self.dir.join(name), text).expect("write PEM file");
    }

    /// `{name}.pem` and `{name}.key`: a certificate for `san` (an IP address or a DNS name).
    fn leaf(&self, name: &str, san: &str, issuer: &rcgen::Certificate, issuer_key: &KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, san);
        let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
        self.write(&format!("{name}.pem"), cert.pem());
        self.write(&format!("{name}.key"), key.serialize_pem());
    }
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // distinct subjects: OpenSSL takes subject == issuer for a self-signed certificate
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}
