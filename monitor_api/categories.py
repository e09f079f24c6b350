"""The national classification of research instruments (the six-digit, three-level category
codes of the national sharing platform): names of its first two levels, in Chinese and
English, so reports and the duplicate-purchase review can say "质谱仪器" (mass spectrometers)
where the registry holds "0102".
"""

from __future__ import annotations

from typing import NamedTuple


class CategoryName(NamedTuple):
    zh: str
    en: str


_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("01", "分析仪器", "Analytical instruments"),
    ("0101", "电子光学仪器", "Electron optical instruments"),
    ("0102", "质谱仪器", "Mass spectrometers"),
    ("0103", "X射线仪器", "X-ray instruments"),
    ("0104", "光谱仪器", "Optical spectrometers"),
    ("0105", "色谱仪器", "Chromatographs"),
    ("0106", "波谱仪器", "Magnetic resonance spectrometers"),
    ("0107", "电化学仪器", "Electrochemical instruments"),
    ("0108", "显微镜及图像分析仪器", "Microscopes and image analysers"),
    ("0109", "热分析仪器", "Thermal analysers"),
    ("0110", "生化分离分析仪器", "Biochemical separation and analysis instruments"),
    ("0111", "环境与农业分析仪器", "Environmental and agricultural analysers"),
    ("0112", "样品前处理及制备仪器", "Sample preparation instruments"),
    ("02", "物理性能测试仪器", "Physical property testing instruments"),
    ("0201", "力学性能测试仪器", "Mechanical property testers"),
    ("0202", "大地测量仪器", "Geodetic instruments"),
    ("0203", "光电测量仪器", "Optoelectronic measuring instruments"),
    ("0204", "声学振动仪器", "Acoustic and vibration instruments"),
    ("0205", "颗粒度测量仪器", "Particle size analysers"),
    ("0206", "探伤仪器", "Flaw detectors"),
    ("03", "计量仪器", "Metrology instruments"),
    ("0301", "长度计量仪器", "Length metrology instruments"),
    ("0302", "热学计量仪器", "Thermal metrology instruments"),
    ("0303", "力学计量仪器", "Mechanical metrology instruments"),
    ("0304", "电磁学计量仪器", "Electromagnetic metrology instruments"),
    ("0305", "时间频率计量仪器", "Time and frequency metrology instruments"),
    ("0306", "声学计量仪器", "Acoustic metrology instruments"),
    ("0307", "光学计量仪器", "Optical metrology instruments"),
    ("0308", "电离辐射计量仪器", "Ionising radiation metrology instruments"),
    ("0309", "电子学计量仪器", "Electronic metrology instruments"),
    ("04", "电子测量仪器", "Electronic measuring instruments"),
    ("0401", "通用电子测量仪器", "General-purpose electronic measuring instruments"),
    ("0402", "射频和微波测试仪器", "RF and microwave test instruments"),
    ("0403", "通讯测量仪器", "Communication test instruments"),
    ("0404", "网络分析仪器", "Network analysers"),
    ("0405", "大规模集成电路测试仪器", "Integrated circuit testers"),
    ("05", "海洋仪器", "Oceanographic instruments"),
    ("0501", "海洋水文测量仪器", "Marine hydrographic instruments"),
    ("0502", "多要素水文气象测量系统", "Multi-parameter hydrometeorological systems"),
    ("0503", "海洋生物调查仪器", "Marine biological survey instruments"),
    ("0504", "海水物理量测量仪器", "Seawater physical property instruments"),
    ("0505", "海洋遥感/遥测仪器", "Marine remote sensing and telemetry instruments"),
    ("0506", "海洋采样设备", "Marine sampling equipment"),
    ("06", "地球探测仪器", "Earth exploration instruments"),
    ("0601", "电法仪器", "Electrical prospecting instruments"),
    ("0602", "电磁法仪器", "Electromagnetic prospecting instruments"),
    ("0603", "磁法仪器", "Magnetic prospecting instruments"),
    ("0604", "重力仪器", "Gravimeters"),
    ("0605", "地震仪器", "Seismic instruments"),
    ("0606", "地球物理测井仪器", "Geophysical well-logging instruments"),
    ("0607", "岩石矿物测试仪器", "Rock and mineral testing instruments"),
    ("07", "大气探测仪器", "Atmospheric sounding instruments"),
    ("0701", "气象台站观测仪器", "Weather station instruments"),
    ("0702", "高空气象探测仪器", "Upper-air sounding instruments"),
    ("0703", "特殊大气探测仪器", "Special atmospheric sounding instruments"),
    ("0704", "主动大气遥感仪器", "Active atmospheric remote sensing instruments"),
    ("0705", "被动大气遥感仪器", "Passive atmospheric remote sensing instruments"),
    ("0706", "高层大气/电离层探测器", "Upper atmosphere and ionosphere sounders"),
    ("0707", "对地观测仪器", "Earth observation instruments"),
    ("08", "天文仪器", "Astronomical instruments"),
    ("0801", "天体测量仪器", "Astrometric instruments"),
    ("0802", "地面天文望远镜", "Ground-based telescopes"),
    ("0803", "空间天文望远镜", "Space telescopes"),
    ("09", "医学诊断仪器", "Medical diagnostic instruments"),
    ("0901", "临床检验分析仪器", "Clinical laboratory analysers"),
    ("0902", "影像诊断仪器", "Diagnostic imaging instruments"),
    ("0903", "电子诊察仪器", "Electronic diagnostic instruments"),
    ("10", "核仪器", "Nuclear instruments"),
    ("1001", "核辐射探测仪器", "Nuclear radiation detectors"),
    ("1002", "活化分析仪器", "Activation analysis instruments"),
    ("1003", "离子束分析仪器", "Ion beam analysis instruments"),
    ("1004", "核效应分析仪器", "Nuclear effect analysis instruments"),
    ("1005", "中子散射及衍射仪器", "Neutron scattering and diffraction instruments"),
    ("11", "特种检测仪器", "Non-destructive testing instruments"),
    ("1101", "射线检测仪器", "Radiographic testing instruments"),
    ("1102", "超声检测仪器", "Ultrasonic testing instruments"),
    ("1103", "电磁检测仪器", "Electromagnetic testing instruments"),
    ("1104", "声发射检测仪器", "Acoustic emission testing instruments"),
    ("1105", "光电检测仪器", "Optoelectronic testing instruments"),
    ("12", "工艺实验设备", "Process test equipment"),
    ("1201", "汽车工艺实验设备", "Automotive process test equipment"),
    ("1202", "化工、制药工艺实验设备", "Chemical and pharmaceutical process test equipment"),
    ("1203", "电子工艺实验设备", "Electronics process test equipment"),
    ("1204", "加工工艺实验设备", "Machining process test equipment"),
    ("1205", "纺织工艺实验设备", "Textile process test equipment"),
    ("1206", "食品工艺实验设备", "Food process test equipment"),
    ("13", "计算机及其配套设备", "Computers and peripherals"),
    ("1301", "计算机", "Computers"),
    ("1302", "服务器", "Servers"),
    ("1303", "软件", "Software"),
    ("1304", "数据采集及工作站", "Data acquisition systems and workstations"),
    ("14", "激光器", "Lasers"),
    ("1401", "激光器", "Lasers"),
    ("99", "其他仪器", "Other instruments"),
)
"""Code, Chinese name, English name of each named class of the first two levels. Each
level's "other" class is left out: its code is not fixed."""

CATEGORY_NAMES: dict[str, CategoryName] = {
    code: CategoryName(zh, en) for code, zh, en in _CLASSES}
"""Two- and four-digit category codes -> names."""



def category_name(code: str | None) -> CategoryName | None:
    """The name of the finest class of the classification ``code`` falls in (a six-digit code:
    its second-level class); None when the classification does not know it."""
    if not code:
        return None
    return CATEGORY_NAMES.get(code[:4]) or CATEGORY_NAMES.get(code[:2])
