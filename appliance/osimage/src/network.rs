//! `cairn-network.toml`, on the EFI system partition so that it can be
//! written before the first boot from any machine (FAT) and survives
//! updates: the network settings, turned into a systemd-networkd unit.
//!
//! ```toml
//! # absent, or mode = "dhcp": DHCP on every Ethernet interface
//! mode = "static"
//! interface = "enp1s0"        # optional: default every Ethernet interface
//! address = "192.0.2.10/24"
//! gateway = "192.0.2.1"       # optional
//! dns = ["192.0.2.1"]         # optional
//! ```

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "dhcp")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

fn dhcp() -> String {
    "dhcp".into()
}

impl Default for Settings {
    fn default() -> Self {
        Settings { mode: dhcp(), interface: None, address: None, gateway: None, dns: Vec::new() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cairn-network.toml: {0}")]
pub struct NetworkError(String);

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, NetworkError> {
        let s: Settings = toml::from_str(text).map_err(|e| NetworkError(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("plain settings serialize")
    }

    pub fn check(&self) -> Result<(), NetworkError> {
        let bad = |m: String| Err(NetworkError(m));
        if let Some(i) = &self.interface
            && (i.is_empty()
                || i.len() > 15
                || !i.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return bad(format!("{i:?} is not an interface name"));
        }
        match self.mode.as_str() {
            "dhcp" => {
                if self.address.is_some() || self.gateway.is_some() {
                    return bad("mode = \"dhcp\" takes no address or gateway".into());
                }
            }
            "static" => {
                let Some(a) = &self.address else {
                    return bad("mode = \"static\" needs address = \"ADDRESS/PREFIX\"".into());
                };
                let (ip, prefix) = a.split_once('/').ok_or_else(|| {
                    NetworkError(format!("address {a:?} needs a prefix length, e.g. {a}/24"))
                })?;
                let ip: IpAddr =
                    ip.parse().map_err(|_| NetworkError(format!("{ip:?} is not an IP address")))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                match prefix.parse::<u8>() {
                    Ok(p) if p <= max => {}
                    _ => return bad(format!("{prefix:?} is not a prefix length (0 to {max})")),
                }
            }
            m => return bad(format!("mode {m:?}: use \"dhcp\" or \"static\"")),
        }
        for g in self.gateway.iter().chain(&self.dns) {
            g.parse::<IpAddr>().map_err(|_| NetworkError(format!("{g:?} is not an IP address")))?;
        }
        Ok(())
    }

    /// The systemd-networkd unit for these settings.
    pub fn networkd_unit(&self) -> String {
        let mut s = String::from(
            "# Written by cairn from cairn-network.toml on the EFI system partition.\n[Match]\n",
        );
        match &self.interface {
            Some(i) => s.push_str(&format!("Name={i}\n")),
            None => s.push_str("Type=ether\n"),
        }
        s.push_str("\n[Network]\n");
        if self.mode == "static" {
            s.push_str(&format!("Address={}\n", self.address.as_deref().unwrap_or_default()));
            if let Some(g) = &self.gateway {
                s.push_str(&format!("Gateway={g}\n"));
            }
        } else {
            s.push_str("DHCP=yes\n");
        }
        for d in &self.dns {
            s.push_str(&format!("DNS={d}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dhcp_settings_become_networkd_units() {
        let s = Settings::parse(
            "mode = \"static\"\ninterface = \"enp1s0\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.1\", \"2001:db8::1\"]\n",
        )
        .unwrap();
        let unit = s.networkd_unit();
        for line in
            ["Name=enp1s0", "Address=192.0.2.10/24", "Gateway=192.0.2.1", "DNS=192.0.2.1", "DNS=2001:db8::1"]
        {
            assert!(unit.lines().any(|l| l == line), "{line} in {unit}");
        }
        assert!(!unit.contains("DHCP"));
        assert_eq!(Settings::parse(&s.to_toml()).unwrap(), s);
        let d = Settings::parse("").unwrap().networkd_unit();
        assert!(d.contains("Type=ether") && d.contains("DHCP=yes"), "{d}");
    }

    #[test]
    fn wrong_settings_are_refused_with_what_is_wrong() {
        for (text, says) in [
            ("mode = \"static\"", "needs address"),
            ("mode = \"static\"\naddress = \"10.0.0.5\"", "prefix length"),
            ("mode = \"static\"\naddress = \"10.0.0.500/24\"", "not an IP"),
            ("mode = \"static\"\naddress = \"10.0.0.5/33\"", "prefix length"),
            ("mode = \"static\"\naddress = \"10.0.0.5/24\"\ngateway = \"router\"", "not an IP"),
            ("mode = \"bridge\"", "use \"dhcp\""),
            ("address = \"10.0.0.5/24\"", "takes no address"),
            ("interface = \"eth0; rm\"", "not an interface"),
            ("mtu = 9000", "unknown field"),
        ] {
            let e = Settings::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
